#!/bin/bash
# Runs on the GPU machine (`device run`, from the repository root, carry [.whl, .dev]; see
# tools/cuda/README.md): kakusan built with `--features cuda` (tools/cuda/build.sh) against
# diffusers fp16 on the same card (issue 8 item 7). About 5 minutes. Writes under $OUT:
#   gpu.txt                  the card and driver
#   mini-{cpu-f32,cuda-f32,cuda-f16}/txt2img/*.png   the built-in model, same prompt and seed
#                            (compare them at home: `kakusan` CPU vs GPU agreement)
#   bench-gpu-f16.md         tools/parity/bench_sd15.py, both tools in fp16 (10 timed steps, 2 rounds)
#   bench-gpu-f32.md         the same in f32 (5 steps, 1 round)
# and prints the wall time of a whole 20-step 512x512 generation in each tool.
export PYTHONUNBUFFERED=1 RUST_BACKTRACE=1
T0=$(date +%s); el() { echo "== $(( $(date +%s) - T0 )) s: $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 3
CU=$(python3 -c "import os,torch;print(os.path.realpath(os.path.join(os.path.dirname(torch.__file__),'..','nvidia','cu13','lib')))")
ls $CU | head -30
export LD_LIBRARY_PATH=$CU:/usr/local/nvidia/lib64:/usr/local/nvidia/lib:$LD_LIBRARY_PATH
xz -dc .dev/kakusan.xz > /tmp/kakusan && chmod +x /tmp/kakusan
ldd /tmp/kakusan | grep -E "not found|cuda|cublas|curand|nvrtc|stdc" 
/tmp/kakusan --version
el smoke
# Built-in model: CPU f32 vs GPU f32 / f16 pictures (compared back home).
for d in "cpu f32" "cuda f32" "cuda f16"; do set -- $d
  ( time timeout 120 /tmp/kakusan generate "a red moon on a blue background" --seed 7 --device $1 --dtype $2 -o $OUT/mini-$1-$2 ) 2>&1 | tail -6
done
el model
timeout 150 python3 tools/parity/make_sd15_random.py /tmp/sd15 2>&1 | tail -3
el bench
timeout 240 python3 tools/parity/bench_sd15.py --model /tmp/sd15 --kakusan /tmp/kakusan --device cuda \
  --kakusan-dtype f16 --diffusers-dtype f16 --steps 10 --repeat 2 --out $OUT/bench-gpu-f16.md 2>&1 | tail -45
el full
( time timeout 120 /tmp/kakusan generate "a photograph of an astronaut riding a horse" --model /tmp/sd15 --device cuda --dtype f16 --steps 20 --width 512 --height 512 --seed 1 -o /tmp/gen ) 2>&1 | tail -8
timeout 120 python3 - <<'PY'
import time, torch
from diffusers import StableDiffusionPipeline
p = StableDiffusionPipeline.from_pretrained("/tmp/sd15", dtype=torch.float16, safety_checker=None, requires_safety_checker=False).to("cuda")
p.set_progress_bar_config(disable=True)
for i in range(2):
    torch.cuda.synchronize(); t = time.perf_counter()
    p("a photograph of an astronaut riding a horse", num_inference_steps=20, height=512, width=512)
    torch.cuda.synchronize(); print(f"diffusers fp16 pipeline 20 steps 512x512 (run {i}): {time.perf_counter()-t:.3f} s")
PY
el f32
timeout 240 python3 tools/parity/bench_sd15.py --model /tmp/sd15 --kakusan /tmp/kakusan --device cuda \
  --kakusan-dtype f32 --diffusers-dtype f32 --steps 5 --repeat 1 --out $OUT/bench-gpu-f32.md 2>&1 | tail -25
el done
