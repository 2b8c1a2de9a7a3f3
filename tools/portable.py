"""Run the chapters and the numeric tests under other float configurations than this
machine's default, to show that what nbval compares strictly prints the same everywhere.

    python tools/portable.py                      # every configuration below, one after another
    python tools/portable.py --config one-thread  # one of them (repeat --config for more)
    python tools/portable.py --list               # what each sets, and what torch honours here

The committed outputs are written with every setting at its default. A CPU with other
vector units, another BLAS or oneDNN kernel, or another number of threads adds floats in
another order, so every number that depends on that order differs in its last bits; on
a GPU far more. The configurations below reproduce that on one machine:

- ``one-thread``: one thread for ATen, OpenMP and MKL (reductions split differently);
- ``ci``: one thread, and ATen's plainest kernels (``ATEN_CPU_CAPABILITY=default``): what
  CI runs (``.ci/run`` reads it from here with ``--export ci``), about 1.2 times slower
  than the default on two cores;
- ``scalar``: one thread, and ATen, oneDNN and MKL limited to their plainest kernels
  (``ATEN_CPU_CAPABILITY=default``, ``ONEDNN_MAX_CPU_ISA=SSE41``,
  ``MKL_ENABLE_INSTRUCTIONS=SSE4_2``): other code paths for every operation;
- ``avx2``: ATen, oneDNN and MKL limited to AVX2, threads as by default. On a CPU with
  AVX-512 this is another configuration; on an AVX2-only CPU it is the default one, so
  it is skipped there, and the report says so.

Before running, each configuration is probed in a fresh process: which ATen capability
and oneDNN ISA torch reports, and whether a fixed set of operations (a matrix product, a
convolution, a sum, ``randn``) gives other bits than the default configuration. A
configuration that changes nothing proves nothing, and the report marks it.

A one-thread configuration runs two ``pytest-xdist`` workers, so two chapters run at once
on two cores; the others run one after another. The trained-model cache is a fresh folder per
configuration, so every model is trained under that configuration too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CONFIGS = {
    "one-thread": dict(ONE_THREAD),
    "ci": {**ONE_THREAD, "ATEN_CPU_CAPABILITY": "default"},
    "scalar": {
        **ONE_THREAD,
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    },
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    },
}
# the unit tests whose results are floats (the others check structure, the CLI, the site)
NUMERIC_TESTS = [
    "tests/test_distributed.py",
    "tests/test_evaluation.py",
    "tests/test_loss.py",
    "tests/test_model.py",
    "tests/test_properties.py",
    "tests/test_training.py",
    "tests/test_cvae.py",
]
NBVAL = ["--nbval", "--nbval-current-env", "--nbval-sanitize-with", "tests/sanitize.cfg"]

PROBE = r"""
import hashlib, os, torch
torch.manual_seed(0)
a, b = torch.randn(512, 1568), torch.randn(1568, 256)
x = torch.randn(128, 1, 28, 28)
conv = torch.nn.Conv2d(1, 16, 3, 2, 1)
with torch.no_grad():
    parts = [a @ b, conv(x), torch.randn(1_000_000).sum(), torch.randn(1000).exp()]
digest = hashlib.sha1(b"".join(t.numpy().tobytes() for t in parts)).hexdigest()[:10]
print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(), digest)
"""


def probe(env: dict[str, str]) -> tuple[str, str, str, str]:
    """(ATen capability, threads, oneDNN ISA, digest of a few float results) under ``env``."""
    full = {**os.environ, **env, "ONEDNN_VERBOSE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, check=True
    ).stdout
    isa = next((line.split("isa:")[1] for line in out.splitlines() if "isa:" in line), "?")
    capability, threads, digest = out.strip().splitlines()[-1].split()
    return capability, threads, isa.strip(), digest


def clean_env() -> dict[str, str]:
    """This process's environment without any of the settings the configurations change."""
    keys = {k for config in CONFIGS.values() for k in config}
    return {k: v for k, v in os.environ.items() if k not in keys}


def run(name: str, env: dict[str, str], extra: list[str]) -> tuple[int, float]:
    with tempfile.TemporaryDirectory(prefix=f"vae-portable-{name}-") as cache:
        full = {**clean_env(), **env, "VAE_TUTORIAL_CACHE": cache}
        cmd = [sys.executable, "-m", "pytest", *NUMERIC_TESTS, "notebooks", *NBVAL]
        workers = 2 if env.get("OMP_NUM_THREADS") == "1" else 1
        cmd += ["-n", str(workers), "--dist", "loadfile", "-q", *extra]
        print(f"\n=== {name}: {' '.join(f'{k}={v}' for k, v in env.items())}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(cmd, cwd=ROOT, env=full)
        return code, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS), help="repeatable")
    parser.add_argument("--list", action="store_true", help="probe the configurations, run nothing")
    parser.add_argument(
        "--export",
        choices=sorted(CONFIGS),
        help="print a configuration as shell exports, run nothing",
    )
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --")
    args = parser.parse_args(argv)
    if args.export:
        print(" ".join(f"export {k}={v};" for k, v in CONFIGS[args.export].items()))
        return 0
    names = args.config or list(CONFIGS)

    base = probe({})
    print(f"default here: ATen {base[0]}, {base[1]} threads, oneDNN {base[2]}, digest {base[3]}")
    changes = {}
    for name in names:
        capability, threads, isa, digest = probe(CONFIGS[name])
        changes[name] = digest != base[3]
        verdict = "other float results" if changes[name] else "SAME float results as default"
        print(f"{name:<11} ATen {capability}, {threads} threads, oneDNN {isa}: {verdict}")
    if args.list:
        return 0

    results = {name: run(name, CONFIGS[name], args.pytest_args) for name in names if changes[name]}
    print("\nconfiguration  result   minutes")
    for name in names:
        if name not in results:
            print(f"{name:<14} skipped: the same float results as the default on this machine")
            continue
        code, seconds = results[name]
        print(f"{name:<14} {'passed' if code == 0 else 'FAILED':<8} {seconds / 60:6.1f}")
    if not results:
        print("no configuration differs from the default here: nothing was shown")
        return 1
    return max(code for code, _ in results.values())


if __name__ == "__main__":
    sys.exit(main())
