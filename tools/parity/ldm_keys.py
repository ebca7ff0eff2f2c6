"""Our own diffusers -> original LDM ("single file") key mapping for SD 1.x / 2.x.

Written from the structure of the two layouts (CompVis `ldm` modules vs diffusers modules),
for the tiny fixtures; make_fixtures.py checks the result by loading it back with diffusers'
own single-file loader.

UNet (`model.diffusion_model.`):
  conv_in -> input_blocks.0.0; time_embedding.linear_{1,2} -> time_embed.{0,2};
  down_blocks.b.resnets.l -> input_blocks.(1 + b*(L+1) + l).0, .attentions.l -> ...1;
  down_blocks.b.downsamplers.0.conv -> input_blocks.(1 + b*(L+1) + L).0.op;
  mid_block.resnets.{0,1} -> middle_block.{0,2}, mid_block.attentions.0 -> middle_block.1;
  up_blocks.b.resnets.l -> output_blocks.(b*(L+1) + l).0, .attentions.l -> ...1;
  up_blocks.b.upsamplers.0.conv -> output_blocks.(b*(L+1) + L).(2 if the block has attentions
  else 1).conv; conv_norm_out / conv_out -> out.0 / out.2.
  Resnet parts: norm1 in_layers.0, conv1 in_layers.2, time_emb_proj emb_layers.1,
  norm2 out_layers.0, conv2 out_layers.3, conv_shortcut skip_connection.
  Transformer internals (norm, proj_in, transformer_blocks.*, proj_out) keep their names.
VAE (`first_stage_model.`):
  encoder.down_blocks.i.resnets.j -> encoder.down.i.block.j (conv_shortcut -> nin_shortcut);
  encoder.down_blocks.i.downsamplers.0.conv -> encoder.down.i.downsample.conv;
  decoder.up_blocks.i -> decoder.up.(n-1-i) (block.j / upsample.conv);
  {en,de}coder.mid_block.resnets.r -> mid.block_(r+1); mid_block.attentions.0 -> mid.attn_1
  (group_norm -> norm, to_q/k/v -> q/k/v, to_out.0 -> proj_out; linear weights become 1x1 conv
  weights [C, C, 1, 1]); conv_norm_out -> norm_out; quant_conv / post_quant_conv as is.
CLIP (SD1, `cond_stage_model.transformer.text_model.`): transformers' names under text_model.
OpenCLIP (SD2, `cond_stage_model.model.`): token_embedding.weight, positional_embedding,
  transformer.resblocks.i.{ln_1, attn.in_proj_weight/in_proj_bias (q;k;v stacked on dim 0),
  attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, ln_final, text_projection ([width, embed]),
  logit_scale.
"""

import re

import numpy as np
import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."
OPENCLIP_PREFIX = "cond_stage_model.model."

_RESNET_PARTS = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def _resnet_part(rest):
    head, _, tail = rest.partition(".")
    return f"{_RESNET_PARTS[head]}.{tail}"


def unet_key(key, config):
    """Maps one diffusers UNet key to its LDM name (without the model prefix)."""
    per = config["layers_per_block"] + 1
    fixed = {
        "conv_in.": "input_blocks.0.0.",
        "time_embedding.linear_1.": "time_embed.0.",
        "time_embedding.linear_2.": "time_embed.2.",
        "conv_norm_out.": "out.0.",
        "conv_out.": "out.2.",
    }
    for a, b in fixed.items():
        if key.startswith(a):
            return b + key[len(a) :]
    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        b, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = 1 + b * per + layer
        if kind == "resnets":
            return f"input_blocks.{idx}.0.{_resnet_part(rest)}"
        return f"input_blocks.{idx}.1.{rest}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)
    if m:
        idx = 1 + int(m[1]) * per + config["layers_per_block"]
        return f"input_blocks.{idx}.0.op.{m[2]}"
    m = re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key)
    if m:
        return f"middle_block.{2 * int(m[1])}.{_resnet_part(m[2])}"
    m = re.match(r"mid_block\.attentions\.0\.(.*)", key)
    if m:
        return f"middle_block.1.{m[1]}"
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        b, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = b * per + layer
        if kind == "resnets":
            return f"output_blocks.{idx}.0.{_resnet_part(rest)}"
        return f"output_blocks.{idx}.1.{rest}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key)
    if m:
        b = int(m[1])
        idx = b * per + config["layers_per_block"]
        has_attn = "CrossAttn" in config["up_block_types"][b]
        return f"output_blocks.{idx}.{2 if has_attn else 1}.conv.{m[2]}"
    raise KeyError(f"no LDM name for UNet key {key}")


_VAE_ATTN_PARTS = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def vae_key(key, config):
    """Maps one diffusers VAE key to its LDM name; says whether the weight becomes a 1x1 conv."""
    n_up = len(config["up_block_types"])
    for side in ("encoder", "decoder"):
        if key.startswith(f"{side}.conv_norm_out."):
            return f"{side}.norm_out." + key.split(".")[-1], False
        if key.startswith(f"{side}.conv_in.") or key.startswith(f"{side}.conv_out."):
            return key, False
    if key.startswith("quant_conv.") or key.startswith("post_quant_conv."):
        return key, False
    m = re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key)
    if m:
        rest = m[3].replace("conv_shortcut", "nin_shortcut")
        return f"encoder.down.{m[1]}.block.{m[2]}.{rest}", False
    m = re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)
    if m:
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}", False
    m = re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key)
    if m:
        rest = m[3].replace("conv_shortcut", "nin_shortcut")
        return f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.{rest}", False
    m = re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key)
    if m:
        return f"decoder.up.{n_up - 1 - int(m[1])}.upsample.conv.{m[2]}", False
    m = re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key)
    if m:
        rest = m[3].replace("conv_shortcut", "nin_shortcut")
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{rest}", False
    m = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)", key)
    if m:
        part = _VAE_ATTN_PARTS[m[2]]
        return f"{m[1]}.mid.attn_1.{part}.{m[3]}", (m[3] == "weight" and part != "norm")
    raise KeyError(f"no LDM name for VAE key {key}")


def _strip_text_model(key):
    return key[len("text_model.") :] if key.startswith("text_model.") else key


def clip_sd1_state(text_sd):
    """SD1 text encoder: transformers' CLIPTextModel keys under cond_stage_model.transformer.text_model."""
    out = {CLIP_PREFIX + _strip_text_model(k): v for k, v in text_sd.items()}
    # SD 1.x checkpoints carry the position_ids buffer (int64), as transformers 4 saved it.
    out[CLIP_PREFIX + "embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None, :]
    return out


def openclip_state(text_sd, num_layers, text_projection, logit_scale):
    """SD2 text encoder in OpenCLIP layout (fused q/k/v)."""
    sd = {_strip_text_model(k): v for k, v in text_sd.items()}
    out = {
        "token_embedding.weight": sd["embeddings.token_embedding.weight"],
        "positional_embedding": sd["embeddings.position_embedding.weight"],
        "ln_final.weight": sd["final_layer_norm.weight"],
        "ln_final.bias": sd["final_layer_norm.bias"],
        "text_projection": text_projection,
        "logit_scale": logit_scale,
    }
    for i in range(num_layers):
        src = f"encoder.layers.{i}."
        dst = f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat(
                [sd[src + f"self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")], dim=0
            )
            out[dst + f"attn.out_proj.{kind}"] = sd[src + f"self_attn.out_proj.{kind}"]
            out[dst + f"ln_1.{kind}"] = sd[src + f"layer_norm1.{kind}"]
            out[dst + f"ln_2.{kind}"] = sd[src + f"layer_norm2.{kind}"]
            out[dst + f"mlp.c_fc.{kind}"] = sd[src + f"mlp.fc1.{kind}"]
            out[dst + f"mlp.c_proj.{kind}"] = sd[src + f"mlp.fc2.{kind}"]
    assert len(out) == 6 + 12 * num_layers
    used = 4 + 16 * num_layers
    assert len(sd) == used, (len(sd), used, sorted(sd)[:5])
    return {OPENCLIP_PREFIX + k: v for k, v in out.items()}


def unet_state(unet_sd, config):
    return {UNET_PREFIX + unet_key(k, config): v for k, v in unet_sd.items()}


def vae_state(vae_sd, config):
    out = {}
    for k, v in vae_sd.items():
        name, to_conv = vae_key(k, config)
        if to_conv:
            assert v.ndim == 2
            v = v[:, :, None, None]
        out[VAE_PREFIX + name] = v
    return out


def ldm_schedule_buffers(beta_start, beta_end, n=1000):
    """The DDPM buffers an LDM checkpoint stores (computed in float64 as ldm does, kept as f32)."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float64).numpy() ** 2
    alphas = 1.0 - betas
    ac = np.cumprod(alphas, axis=0)
    ac_prev = np.append(1.0, ac[:-1])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)  # v_posterior = 0
    bufs = {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": np.sqrt(ac),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
        "log_one_minus_alphas_cumprod": np.log(1.0 - ac),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": np.log(np.maximum(post_var, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
    }
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in bufs.items()}
