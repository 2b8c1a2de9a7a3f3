#!/usr/bin/env bash
# The book's checks on a CUDA machine, in one run that fits a short GPU lease (about 4
# minutes on an H100 with 16 cores), all at once since none of them fills the GPU:
#   - every chapter under strict nbval (pytest-xdist, 3 processes);
#   - `train --preset long` (500 epochs), then its test NLL at K = 5000;
#   - the unit tests that exercise the device (training, evaluation, the CUDA-graph step).
# `python -m vae_tutorial.bench --device cuda --compile` is the speed measurement; run it
# alone, since it times the GPU. Logs go to $OUT (or gpu-logs/). Where jupyter, nbval and
# pytest-xdist are missing, put their wheels in .whl/ first; MNIST is read from
# $VAE_TUTORIAL_DATA (default: data/).
set -u
OUT=${OUT:-gpu-logs}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export VAE_TUTORIAL_DATA=${VAE_TUTORIAL_DATA:-$PWD/data} VAE_TUTORIAL_CACHE=/tmp/vae-cache
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg VAE_TUTORIAL_PROGRESS=off
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  nproc; } > "$OUT/machine.log" 2>&1
python3 -c "import vae_tutorial as vt; vt.download_mnist()" >> "$OUT/machine.log" 2>&1

( start=$(date +%s)
  OMP_NUM_THREADS=2 python3 -m vae_tutorial train --preset long --out /tmp/long \
    --no-progress > "$OUT/long.log" 2>&1
  echo "wall time of train --preset long: $(( $(date +%s) - start )) s" >> "$OUT/long.log"
  start=$(date +%s)
  OMP_NUM_THREADS=2 python3 -m vae_tutorial evaluate /tmp/long/checkpoint.pt --k 5000 \
    >> "$OUT/long.log" 2>&1
  echo "wall time of evaluate --k 5000: $(( $(date +%s) - start )) s" >> "$OUT/long.log" ) &

OMP_NUM_THREADS=2 python3 -m pytest tests/test_graphed.py tests/test_training.py \
  tests/test_evaluation.py tests/test_cvae.py tests/test_model.py tests/test_loss.py \
  -q -p no:cacheprovider --tb=short -rs > "$OUT/unit.log" 2>&1 &

OMP_NUM_THREADS=3 python3 -m pytest notebooks --nbval --nbval-current-env \
  --nbval-sanitize-with tests/sanitize.cfg -n 3 --dist loadfile -p no:cacheprovider -q \
  --tb=short --durations=15 > "$OUT/nbval.log" 2>&1
tail -n 30 "$OUT/nbval.log"
wait
tail -n 5 "$OUT/unit.log" "$OUT/long.log"
