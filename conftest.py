"""pytest set-up shared by tests/ and notebooks/ (nbval).

Progress bars off: nbval reads a kernel's messages only after a cell finishes, and the
updates of a widget progress bar during a two-minute training cell can overflow the
kernel's message queue, which then drops the cell's final status message. Kernels that
nbval starts inherit this environment.
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("VAE_TUTORIAL_PROGRESS", "off")

# Chapters that load a model another of them trains (through the cache): under pytest-xdist
# (``--dist loadgroup``) they run in one process, in order, so that the model is trained
# once. Every other file is a group of its own.
SHARED_MODELS = ("06_training", "07_latent_space", "10_evaluation", "13_latent_explorer")


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = Path(str(item.fspath)).stem
        group = "chapters-sharing-models" if name in SHARED_MODELS else name
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_terminal_summary(terminalreporter):
    """After the run, one line per chapter: how long nbval took to re-execute it."""
    seconds: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            nodeid = getattr(report, "nodeid", "")
            if ".ipynb::" in nodeid and hasattr(report, "duration"):
                chapter = nodeid.split("::")[0]
                seconds[chapter] = seconds.get(chapter, 0.0) + report.duration
    if seconds:
        terminalreporter.section("time per chapter (nbval)")
        for chapter, value in sorted(seconds.items()):
            terminalreporter.write_line(f"{value:8.1f} s  {chapter}")
        terminalreporter.write_line(f"{sum(seconds.values()):8.1f} s  all chapters")
