#!/usr/bin/env bash
# Every GPU figure the project asks for, in one command, on a machine with CUDA (CI has none):
#   bash scripts/gpu_check.sh [OUT]       (OUT: where the results go, gpu-results/ by default)
# Needs the pipeline's packages (requirements.txt and requirements-dev.txt); the latency section of the
# benchmark needs DVC. Writes OUT/*.txt, OUT/compare.md and OUT/bench-cuda.json; prints them as it goes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-results}
mkdir -p "$out"
python -c "import sys, torch; torch.cuda.is_available() or sys.exit('gpu_check: error: CUDA is not available here'); \
print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))" | tee "$out/device.txt"

echo "== the CUDA tests, and auto's choice"
python -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_device.py 2>&1 | tee "$out/tests.txt"

echo "== the pipeline's stages on CUDA against the committed CPU metrics"
python scripts/compare_devices.py --device cuda | tee "$out/compare.md"

echo "== the toy pipeline's stage code in one process, start-up included, by train.device"
for device in cpu auto cuda; do
  dir=$(mktemp -d)
  sed "s/device: auto/device: $device/" params.yaml >"$dir/params.yaml"
  python -c "import subprocess, sys, time
start = time.perf_counter()
run = subprocess.run([sys.executable, '-m', 'scripts.run_all', sys.argv[1]], capture_output=True, text=True, check=True)
chosen = [line for line in run.stderr.splitlines() if line.startswith('device:')][:1]
print(f'train.device: {sys.argv[2]:<5} {time.perf_counter() - start:6.2f} s', *chosen)" "$dir" "$device"
  rm -rf "$dir"
done | tee "$out/toy-by-device.txt"

echo "== the benchmark on CUDA: latency, epochs/s against the copy-bandwidth floor, time to accuracy"
python bench/run.py --device cuda --out "$out/bench-cuda.json" | tee "$out/bench-cuda.txt"
