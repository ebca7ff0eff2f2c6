"""A tiny random LoRA for tests/fixtures/sd1-tiny made with peft, saved by diffusers
(`save_lora_weights`: `unet.*` / `text_encoder.*` `lora_A` / `lora_B` keys and the
`lora_adapter_metadata` header with r and lora_alpha), and what diffusers computes with it
loaded at a weight (`load_lora_weights` + `set_adapters`):

- tests/fixtures/lora-sd1-tiny.safetensors: the LoRA file;
- tests/fixtures/lora-sd1-tiny-ref.safetensors: `ids` (a tokenized prompt), `te_base` /
  `te_lora` (text encoder last_hidden_state without / with the LoRA), `sample`, `context`,
  `timestep`, `unet_base` / `unet_lora` (UNet outputs); lora-sd1-tiny-ref.json: the weight,
  ranks and alphas.

Run with tools/parity/.venv/bin/python (peft pinned in requirements.txt). float32, CPU.
"""

import json
import os
import tempfile

import torch
from diffusers import StableDiffusionPipeline
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
from safetensors.torch import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
MODEL = os.path.join(FIX, "sd1-tiny")
WEIGHT = 0.7
UNET_R, UNET_ALPHA = 4, 8
TE_R, TE_ALPHA = 2, 3


def load():
    pipe = StableDiffusionPipeline.from_pretrained(
        MODEL, torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def randomize_lora(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    pipe = load()
    unet_cfg = LoraConfig(
        r=UNET_R,
        lora_alpha=UNET_ALPHA,
        init_lora_weights=False,
        target_modules=["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "conv1"],
    )
    te_cfg = LoraConfig(
        r=TE_R,
        lora_alpha=TE_ALPHA,
        init_lora_weights=False,
        target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1"],
    )
    pipe.unet.add_adapter(unet_cfg)
    # transformers 5.24's add_adapter wants peft >= 0.22, which the wheel index lacks; peft's
    # own injection does the same to the module tree.
    inject_adapter_in_model(te_cfg, pipe.text_encoder)
    randomize_lora(pipe.unet, gen)
    randomize_lora(pipe.text_encoder, gen)
    unet_sd = get_peft_model_state_dict(pipe.unet)
    te_sd = get_peft_model_state_dict(pipe.text_encoder)
    with tempfile.TemporaryDirectory() as tmp:
        StableDiffusionPipeline.save_lora_weights(
            tmp,
            unet_lora_layers=unet_sd,
            text_encoder_lora_layers=te_sd,
            unet_lora_adapter_metadata=unet_cfg.to_dict(),
            text_encoder_lora_adapter_metadata=te_cfg.to_dict(),
        )
        src = os.path.join(tmp, "pytorch_lora_weights.safetensors")
        with open(src, "rb") as f:
            data = f.read()
    lora_path = os.path.join(FIX, "lora-sd1-tiny.safetensors")
    with open(lora_path, "wb") as f:
        f.write(data)

    # Reference: a fresh pipeline, base then with the LoRA at WEIGHT.
    pipe = load()
    ids = pipe.tokenizer(
        "a red cat, blue sky", padding="max_length", max_length=77, return_tensors="pt"
    ).input_ids
    sample = torch.randn((1, 4, 8, 8), generator=gen)
    context = torch.randn((1, 77, 8), generator=gen)
    timestep = torch.tensor([500.0])
    with torch.no_grad():
        te_base = pipe.text_encoder(ids).last_hidden_state
        unet_base = pipe.unet(sample, timestep, encoder_hidden_states=context).sample
        pipe.load_lora_weights(lora_path, adapter_name="tiny")
        pipe.set_adapters(["tiny"], adapter_weights=[WEIGHT])
        te_lora = pipe.text_encoder(ids).last_hidden_state
        unet_lora = pipe.unet(sample, timestep, encoder_hidden_states=context).sample
    out = {
        "ids": ids.to(torch.int64).contiguous(),
        "te_base": te_base.contiguous(),
        "te_lora": te_lora.contiguous(),
        "sample": sample.contiguous(),
        "context": context.contiguous(),
        "timestep": timestep.contiguous(),
        "unet_base": unet_base.contiguous(),
        "unet_lora": unet_lora.contiguous(),
    }
    save_file(out, os.path.join(FIX, "lora-sd1-tiny-ref.safetensors"))
    meta = {
        "weight": WEIGHT,
        "unet": {"r": UNET_R, "lora_alpha": UNET_ALPHA},
        "text_encoder": {"r": TE_R, "lora_alpha": TE_ALPHA},
        "te_lora_effect": float((te_lora - te_base).abs().max()),
        "unet_lora_effect": float((unet_lora - unet_base).abs().max()),
        "made_by": "tools/parity/make_lora_fixture.py",
        "diffusers": __import__("diffusers").__version__,
        "peft": __import__("peft").__version__,
    }
    with open(os.path.join(FIX, "lora-sd1-tiny-ref.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
