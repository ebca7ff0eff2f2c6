#!/usr/bin/env bash
# Builds `kakusan` with `--features cuda` on a machine without a GPU or a CUDA install, and packs
# what a GPU machine needs to benchmark it (issue 8 item 7; tools/cuda/README.md).
#
#   tools/cuda/build.sh [TOOLKIT_DIR]      (default /work/cuda13)
#
# 1. The CUDA 13.0 toolkit parts from PyPI wheels (nvcc, cudart, headers, nvvm, cuBLAS, cuRAND,
#    NVRTC), unpacked into TOOLKIT_DIR. candle's `cuda` feature links cudarc dynamically
#    (`dynamic-linking`), so the linker needs libcuda.so, which only a driver installs: a stub
#    with cudarc's driver-API names and the soname libcuda.so.1 stands in; the GPU machine's
#    driver provides the real one at run time.
# 2. `cargo build --release --features cuda` into $CUDA_TARGET_DIR (default target-cuda/; never
#    the CPU build's target folder, whose `kakusan` it would replace with one that needs a GPU), with
#    the kernels' PTX for compute capability $CUDA_COMPUTE_CAP (default 90: Hopper).
# 3. Packs for `device run`: .dev/kakusan.xz (the stripped binary) and, in .whl/, the diffusers
#    wheel the GPU machine's Python lacks. Both folders are git-ignored
#    (.git/info/exclude) and travel with `carry`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TK=${1:-/work/cuda13}
CU=$TK/nvidia/cu13
PY=${PYTHON:-python3}
WHEELS=(nvidia-cuda-nvcc==13.0.* nvidia-cuda-runtime==13.0.* nvidia-cuda-cccl==13.0.* \
        nvidia-cuda-crt==13.0.* nvidia-nvvm==13.0.* nvidia-cublas==13.0.* nvidia-curand==10.4.* \
        nvidia-cuda-nvrtc==13.0.*)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

if [ ! -x "$CU/bin/nvcc" ]; then
  mkdir -p "$TK/wheels"
  for w in "${WHEELS[@]}"; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      "${PLATFORMS[@]}" -d "$TK/wheels" "$w"
  done
  for f in "$TK"/wheels/*.whl; do unzip -q -o "$f" 'nvidia/*' -d "$TK"; done
fi
ln -sfn lib "$CU/lib64"
for l in cublas cublasLt cudart nvrtc; do ln -sf "lib$l.so.13" "$CU/lib/lib$l.so"; done
ln -sf libcurand.so.10 "$CU/lib/libcurand.so"

# The stub driver library: every `cu*` function cudarc's driver bindings declare.
CUDARC=$(sed -n '/^name = "cudarc"/{n;s/version = "\(.*\)"/\1/p}' "$ROOT/Cargo.lock")
SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$CUDARC" | head -1)
if [ ! -d "$SRC" ]; then (cd "$ROOT" && cargo fetch -q); SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$CUDARC" | head -1); fi
mkdir -p "$CU/lib/stubs"
grep -ohP '^pub unsafe fn \Kcu\w+' "$SRC/src/driver/sys/mod.rs" | sort -u \
  | awk '{print "void " $1 "(void) {}"}' > "$CU/lib/stubs/libcuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CU/lib/stubs/libcuda.so" "$CU/lib/stubs/libcuda_stub.c"

export CUDA_ROOT=$CU CUDA_HOME=$CU CUDA_PATH=$CU PATH=$CU/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export LIBRARY_PATH=$CU/lib:$CU/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
export CARGO_TARGET_DIR=${CUDA_TARGET_DIR:-$ROOT/target-cuda}
nvcc --version | tail -1
(cd "$ROOT" && cargo build --release --features cuda)
BIN=$CARGO_TARGET_DIR/release/kakusan
echo "built $BIN"

mkdir -p "$ROOT/.dev" "$ROOT/.whl"
for p in /.dev/ /.whl/ /target-cuda/; do
  grep -qxF "$p" "$ROOT/.git/info/exclude" 2>/dev/null || echo "$p" >> "$ROOT/.git/info/exclude"
done
strip -o "$ROOT/.dev/kakusan" "$BIN"
xz -T0 -6 -f "$ROOT/.dev/kakusan"
DIFFUSERS=$(sed -n 's/^diffusers==//p' "$ROOT/tools/parity/requirements.txt")
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 "${PLATFORMS[@]}" \
  -d "$ROOT/.whl" "diffusers==$DIFFUSERS" importlib_metadata
ls -la "$ROOT/.dev" "$ROOT/.whl"
echo "now: device run, command 'bash tools/cuda/gpu_bench.sh 2>&1 | tee \$OUT/log.txt', carry [.whl, .dev]"
