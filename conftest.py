"""pytest set-up shared by tests/ and notebooks/ (nbval).

Progress bars off: nbval reads a kernel's messages only after a cell finishes, and the
updates of a widget progress bar during a two-minute training cell can overflow the
kernel's message queue, which then drops the cell's final status message. Kernels that
nbval starts inherit this environment.
"""

import os
from pathlib import Path

os.environ.setdefault("VAE_TUTORIAL_PROGRESS", "off")

# Chapters that load a model another chapter trains (through the cache, under a lock). They
# run last, so that under pytest-xdist the other process has trained that model by then
# instead of one process waiting for the other.
LOADS_ANOTHER_CHAPTERS_MODEL = (
    "01_big_picture",
    "08_latent_space",
    "09_your_vae",
    "10_evaluation",
    "11_beta_vae",
    "12_conditional_vae",
    "13_latent_explorer",
    "14_ground_truth",
    "15_grey_levels",
)


# The chapter whose model three of those load, and the longest: it starts first, so that
# its model is ready before they ask for it (a CI run that started it after the unit tests
# had two chapters wait 223 s and 338 s for it).
TRAINS_FIRST = ("07_training",)


def pytest_collection_modifyitems(config, items):
    """Keep each file's items together and in order; move ``TRAINS_FIRST`` to the front
    and the chapters that load another chapter's model to the end."""
    stem = {i: Path(str(i.fspath)).stem for i in items}
    first = [i for i in items if stem[i] in TRAINS_FIRST]
    last = [i for i in items if stem[i] in LOADS_ANOTHER_CHAPTERS_MODEL]
    middle = [i for i in items if i not in first and i not in last]
    items[:] = first + middle + last


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
