#!/usr/bin/env bash
# GPU check (not part of CI: CI has no GPU). Builds the addon against PyTorch's CUDA-enabled libtorch and runs the
# test suite and the benchmark on CUDA:
#   scripts/gpu-check.sh
# Needs: python3 with a CUDA build of torch (and what its TorchConfig.cmake needs, e.g. the CUDA toolkit), cmake,
# g++, and node_modules (npm ci). On a machine without Node, .device/setup.sh (from ../shared/device/pack.sh)
# unpacks one. Afterwards build/ holds the CUDA build: `npm run build:native` after `rm -rf build` returns to the
# system libtorch.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v node >/dev/null && [ -x .device/setup.sh ]; then
  .device/setup.sh
  export PATH=/tmp/node/bin:$PATH
  export npm_config_nodedir="$PWD/.device"
fi
command -v node >/dev/null || { echo "gpu-check: node is not installed" >&2; exit 1; }
[ -d node_modules ] || { echo "gpu-check: node_modules is missing: run npm ci first" >&2; exit 1; }

torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') ||
  { echo "gpu-check: python3 cannot import torch (install a CUDA build of PyTorch)" >&2; exit 1; }
python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' ||
  { echo "gpu-check: PyTorch sees no CUDA device" >&2; exit 1; }
export Torch_DIR="$torch_prefix/Torch"
echo "gpu-check: building against $Torch_DIR"

# A build/ configured for another libtorch keeps that libtorch's cached paths: start it afresh.
if [ -f build/CMakeCache.txt ] && ! grep -q "^Torch_DIR:PATH=$Torch_DIR\$" build/CMakeCache.txt; then
  rm -rf build
fi
# PyTorch's wheels carry their own libstdc++-compatible shared libraries next to libtorch; make them findable.
export LD_LIBRARY_PATH="$torch_prefix/../../lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
node scripts/build-addon.mjs

node --input-type=module -e "
  import { createRequire } from 'node:module';
  const info = createRequire(import.meta.url)('./build/Release/ipclip.node').runtimeInfo();
  console.log('gpu-check: runtime', JSON.stringify(info));
  if (!info.cudaAvailable) { console.error('gpu-check: the addon sees no CUDA device'); process.exit(1); }
"

IPCLIP_DEVICE=cuda npx vitest run
# The benchmark directly (npm run bench would run scripts/ensure.mjs, which is for Debian's CPU setup).
if [ -f bench/run.mjs ]; then
  node bench/run.mjs --device cuda
fi
# Data parallelism over NCCL (issue 14): 2 ranks on 2 GPUs (skipped with fewer), a short reference run on the
# SynthDomains cache of `npm run demo` (.cache/synth; IPCLIP_GPU_DATA names another root): the run must finish on both ranks (NCCL all-reduce of the prompt gradients).
if [ "$(python3 -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  node -e "const a=require('./build/Release/ipclip.node'); if(!a.distributedBackends.includes('nccl')){console.error('gpu-check: this build has no NCCL backend');process.exit(1)}"
  IPCLIP_DIST_BACKEND=nccl node bin/ipclip.js train --nproc-per-node 2 --device cuda --scenario reference \
    --data "${IPCLIP_GPU_DATA:-.cache/synth}" --authorized photo --epochs 1 --batch-size 8 --out /tmp/ipclip-nccl-run --fresh --skip-eval
else
  # One GPU: NCCL's code paths on a 1-rank group (collectives, the step's all-reduce, synchronised BatchNorm).
  npm run build:ts >/dev/null
  node scripts/nccl-check.mjs --data "${IPCLIP_GPU_DATA:-.cache/synth}"
fi
echo "gpu-check: done"
