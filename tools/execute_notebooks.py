"""Re-execute chapters in place, top to bottom, the way they are committed.

    python tools/execute_notebooks.py notebooks/02_data.ipynb [...]

Runs each notebook in a fresh kernel with ``notebooks/`` as the working directory, on the
CPU, with progress bars off (``VAE_TUTORIAL_PROGRESS=off``) so that the committed outputs
hold the per-epoch lines and not a bar's last frame, and without saving widget state (a
page with widget state loads its widget manager from a CDN, which an offline reader
cannot reach; the chapters' widgets need a kernel anyway). Afterwards ``make test`` checks
them with nbval.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=1800,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
        store_widget_state=False,  # the site would load a widget manager from a CDN
    )
    start = time.perf_counter()
    client.execute()
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main(paths: list[str]) -> int:
    os.environ.update(VAE_TUTORIAL_PROGRESS="off", CUDA_VISIBLE_DEVICES="")
    for name in paths:
        seconds = execute(Path(name))
        print(f"{name}: executed in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
