#!/usr/bin/env bash
# On a machine with a CUDA GPU: the CUDA tests, then throughput and time to accuracy on the GPU.
# Not part of CI (CI has no GPU). Run from the repository root:
#
#     bash benchmarks/gpu.sh DATA_DIR [RESULTS_DIR]
#
# DATA_DIR holds mnist/ and fashion-mnist/ (the IDX .gz files); RESULTS_DIR defaults to
# benchmarks/results and receives gpu-tests.log, throughput-gpu.md and time_to_accuracy-gpu.md.
set -uo pipefail
data=${1:?usage: bash benchmarks/gpu.sh DATA_DIR [RESULTS_DIR]}
results=${2:-benchmarks/results}
mkdir -p "$results"
python=${PYTHON:-python3}
export MPLBACKEND=Agg PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

# The CUDA path: tests/test_cuda.py runs only here; the trainer's tests run on the GPU too (device auto).
CNNLAB_TEST_DATA="$data" timeout 420 "$python" -m pytest -q -p no:cacheprovider \
    tests/test_cuda.py tests/test_fast_paths.py tests/test_train.py 2>&1 | tee "$results/gpu-tests.log" | tail -25

"$python" benchmarks/throughput.py --data-dir "$data" --device cuda --output "$results/throughput-gpu.md"
"$python" benchmarks/time_to_accuracy.py --data-dir "$data" --seeds 3 \
    --output "$results/time_to_accuracy-gpu.md" -- --device cuda
