#!/usr/bin/env bash
# The book's checks on a CUDA machine, in one run that fits a short GPU lease (about 4
# minutes on an H100 with 16 cores), all at once since none of them fills the GPU:
#   - every chapter under strict nbval (pytest-xdist, 3 processes);
#   - training runs beside them (RUNS, below);
#   - the unit tests that exercise the device (training, evaluation, the CUDA-graph step).
# `python -m vae_tutorial.bench --device cuda --compile` is the speed measurement; run it
# alone, since it times the GPU. Logs go to $OUT (or gpu-logs/). Where jupyter, nbval and
# pytest-xdist are missing, put their wheels in .whl/ first; MNIST and Fashion-MNIST are
# read from $VAE_TUTORIAL_DATA (default: data/). To bring them within the 64 MiB a call may
# carry, xz the eight uncompressed files (35 MB) into an ignored folder, carry it, and unpack
# it into data/<name>/raw/ there before this script (lzma in Python does it).
set -u
OUT=${OUT:-gpu-logs}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export VAE_TUTORIAL_DATA=${VAE_TUTORIAL_DATA:-$PWD/data} VAE_TUTORIAL_CACHE=/tmp/vae-cache
unset MPLBACKEND  # under Agg, plt.show() shows nothing and nbval misses the figures
export PYTHONUNBUFFERED=1 VAE_TUTORIAL_PROGRESS=off
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  nproc; } > "$OUT/machine.log" 2>&1
python3 -c "import vae_tutorial as vt; vt.download_mnist()" >> "$OUT/machine.log" 2>&1

# RUNS=long: `train --preset long` and its NLL at K = 5000 (about 4 minutes).
# RUNS=compare: the `--preset fast` runs that the later chapters quote: the ELBO (k = 1)
# against the IWAE bound (k = 5), and on grey levels the blog's loss against the
# continuous Bernoulli; each then evaluated at K = 1000 with its active units.
RUNS=${RUNS:-long}
timed() {  # timed LOG COMMAND...: run COMMAND, append its output and wall time to LOG
  local log=$1 start=$(date +%s); shift
  echo "\$ $*" >> "$log"
  OMP_NUM_THREADS=2 "$@" >> "$log" 2>&1
  echo "wall time: $(( $(date +%s) - start )) s" >> "$log"
}
fast_run() {  # fast_run NAME OPTIONS...: train --preset fast, then evaluate at K = 1000
  local name=$1; shift
  timed "$OUT/$name.log" python3 -m vae_tutorial train --preset fast --out "/tmp/$name" \
    --no-progress "$@" ${TRAIN_EXTRA:-}
  timed "$OUT/$name.log" python3 -m vae_tutorial evaluate "/tmp/$name/checkpoint.pt" \
    --k "${EVAL_K:-1000}"
}
if [ "$RUNS" = long ]; then
  ( timed "$OUT/long.log" python3 -m vae_tutorial train --preset long --out /tmp/long \
      --no-progress
    timed "$OUT/long.log" python3 -m vae_tutorial evaluate /tmp/long/checkpoint.pt --k 5000 ) &
elif [ "$RUNS" = compare ]; then
  ( fast_run elbo-k1 --no-graph; fast_run grey-blog --grey ) &
  ( fast_run iwae-k5 --iwae-k 5; fast_run grey-cb --grey --likelihood continuous-bernoulli ) &
fi  # RUNS=none: the chapters and unit tests only

[ "${UNIT:-1}" = 0 ] || OMP_NUM_THREADS=2 python3 -m pytest tests/test_graphed.py tests/test_training.py \
  tests/test_evaluation.py tests/test_cvae.py tests/test_model.py tests/test_loss.py \
  tests/test_objectives.py tests/test_likelihood_model.py \
  -q -p no:cacheprovider --tb=short -rs > "$OUT/unit.log" 2>&1 &

# NOTEBOOKS (some chapters), UNIT=0 (no unit tests) and TRAIN_EXTRA (e.g. "--epochs 1
# --train-size 500") shorten a run
OMP_NUM_THREADS=3 python3 -m pytest ${NOTEBOOKS:-notebooks} --nbval --nbval-current-env \
  --nbval-sanitize-with tests/sanitize.cfg -n 3 --dist loadfile -p no:cacheprovider -q \
  --tb=short --durations=15 > "$OUT/nbval.log" 2>&1
tail -n 30 "$OUT/nbval.log"
wait
tail -n 5 "$OUT"/*.log
