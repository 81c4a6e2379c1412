#!/usr/bin/env bash
# The CUDA backend's checks on a GPU machine that has no Rust toolchain (issue 7).
#
#   bench/cuda_check.sh build   # here (cargo): builds kiln --features cuda and the GPU test
#                               # binaries, stripped, into target/cuda-check (~60 MB)
#   bench/cuda_check.sh run     # there: runs them — NVRTC compile, per-op CPU parity, the
#                               # PyTorch GPT fixtures on the GPU, then a training benchmark
#                               # against PyTorch on the same GPU — printing every figure
#
# The binaries are built for this machine's CPU (.cargo/config.toml: target-cpu=native); for a
# host with a different CPU, build with RUSTFLAGS="-C target-cpu=x86-64-v3".
# Nothing is needed on the GPU machine but the NVIDIA driver, NVRTC and cuBLAS (any CUDA 12
# toolkit, or PyTorch's pip wheels: the script adds their lib/ directories to LD_LIBRARY_PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/cuda-check

test_bin() { # crate test-name -> path of the release test binary
  cargo test --release -p "$1" --test "$2" --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("executable") and m.get("target", {}).get("name") == sys.argv[1]: print(m["executable"])' "$2"
}

case "${1:-}" in
build)
  rm -rf "$OUT" && mkdir -p "$OUT/fixtures"
  cargo build --release -p kiln-cli --features cuda
  cp target/release/kiln "$OUT/kiln"
  cp "$(test_bin kiln-cuda nvrtc)" "$OUT/nvrtc"
  cp "$(test_bin kiln-cuda parity)" "$OUT/parity"
  cp "$(test_bin kiln-cuda nccl)" "$OUT/nccl"
  cp "$(test_bin kiln-train torch_parity)" "$OUT/torch_parity"
  cp crates/kiln-train/tests/fixtures/*.safetensors "$OUT/fixtures/"
  strip "$OUT"/kiln "$OUT"/nvrtc "$OUT"/parity "$OUT"/nccl "$OUT"/torch_parity
  du -sh "$OUT"
  ;;
run)
  # CUDA libraries from a toolkit or from PyTorch's wheels
  for d in /usr/local/cuda/lib64 $(python3 -c 'import glob,os,site
for s in site.getsitepackages(): print(" ".join(glob.glob(os.path.join(s, "nvidia", "*", "lib"))))' 2>/dev/null); do
    [ -d "$d" ] && LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
  done
  export LD_LIBRARY_PATH
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  "$OUT/nvrtc" --nocapture
  "$OUT/parity" --nocapture --test-threads 1
  "$OUT/nccl" --nocapture
  KILN_TRAIN_FIXTURES="$OUT/fixtures" "$OUT/torch_parity" --nocapture --test-threads 1 cuda
  "$OUT/kiln" --device cuda bench train --preset char-small --steps 20 --warmup 3
  "$OUT/kiln" --device cuda bench train --preset char-small --steps 20 --warmup 3 --precision bf16
  rm -rf /tmp/kiln-cuda-run
  "$OUT/kiln" --device cuda train --preset char-tiny --steps 300 --precision bf16 --out /tmp/kiln-cuda-run
  ;;
*)
  echo "usage: $0 build|run" >&2
  exit 2
  ;;
esac
