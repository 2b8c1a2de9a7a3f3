"""The book's structure: every chapter is in the table of contents, follows the template,
is committed executed, and opens in Colab from the repository named in _config.yml."""

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
spec = importlib.util.spec_from_file_location("sync_colab", ROOT / "tools" / "sync_colab.py")
sync_colab = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sync_colab)


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def test_every_notebook_is_in_the_toc_and_every_toc_entry_exists():
    files = toc_files()
    assert sorted(f for f in files if f.startswith("notebooks/")) == [
        f"notebooks/{p.stem}" for p in NOTEBOOKS
    ]
    for f in files:
        assert (ROOT / f"{f}.ipynb").exists() or (ROOT / f"{f}.md").exists(), f


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_links_agree_with_config(path):
    assert sync_colab.problems(path) == []


def test_a_changed_repository_is_detected(monkeypatch):
    monkeypatch.setattr(
        sync_colab, "repository", lambda: ("https://github.com/someone/fork", "dev")
    )
    found = sync_colab.problems(NOTEBOOKS[0])
    assert len(found) == 2 and "someone/fork/blob/dev/notebooks/" in found[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_follows_the_template(path):
    nb = nbformat.read(path, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for heading in ("**What you will learn**", "## Exercises", "## Summary", "## References"):
        assert heading in markdown, f"{path.name} lacks {heading}"
    assert 2 <= markdown.count(":class: dropdown") <= 4, "2-4 exercises with hidden solutions"
    assert re.search(r"\{cite:[tp]\}`", markdown), "cites the bibliography"
    assert "**Check" in markdown, "has checks a reader can see"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].metadata.get("tags") == ["colab-setup"]
    assert 'if "google.colab" in sys.modules:' in code[0].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_is_committed_executed_in_order_without_errors(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert None not in counts and counts == sorted(counts), "run top to bottom before committing"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), "has pictures"
    assert nb.metadata.kernelspec.name == "python3"


def test_bibliography_has_every_cited_key():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    sources = [p.read_text() for p in NOTEBOOKS] + [
        p.read_text() for p in (ROOT / "book").glob("*.md")
    ]
    cited = {
        k.strip()
        for s in sources
        for group in re.findall(r"\{cite:?[tp]?\}`([^`]+)`", s)
        for k in group.split(",")
    }
    assert cited <= keys, f"cited but not in references.bib: {sorted(cited - keys)}"


# A decimal with two or more digits after the point, or a number in e-notation.
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d{2,}|\d\.\d+e[-+]\d+")
IGNORED = {"nbval-ignore-output", "nbval-skip"}


def compared_cells(nb) -> list[tuple[int, object]]:
    """(nbval's cell number, cell) of every code cell whose output nbval compares strictly."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    return [
        (i, c)
        for i, c in enumerate(code)
        if not IGNORED & set(c.metadata.get("tags", []))
        and "NBVAL_IGNORE_OUTPUT" not in c.source
        and "NBVAL_SKIP" not in c.source
    ]


def printed_text(cell) -> str:
    return "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in cell.outputs
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_strictly_compared_decimals_are_portable(path):
    """The book's rule: nbval compares only what prints the same on every CPU, thread count
    and GPU. A compared cell that prints decimals must say, in a '# Compared:' comment, why
    those digits cannot change (exact values, or rounding far above float noise); any other
    number is printed by a cell whose output is not compared, and its claim is asserted."""
    nb = nbformat.read(path, as_version=4)
    unexplained = [
        f"Cell {i}: {DECIMAL.search(printed_text(c)).group()}"
        for i, c in compared_cells(nb)
        if DECIMAL.search(printed_text(c)) and "# Compared:" not in c.source
    ]
    assert not unexplained, (
        f"{path.name} compares decimals that may differ elsewhere: {unexplained}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_ignored_outputs_say_why(path):
    """A cell whose output is not compared says why in a comment, so a reader knows that
    the figures it prints depend on the machine, and where its claim is asserted."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    silent = [
        i
        for i, c in enumerate(code)
        if "nbval-ignore-output" in c.metadata.get("tags", [])
        and not re.search(r"#.*(not compared|machine|depend)", c.source, re.IGNORECASE)
    ]
    assert not silent, f"{path.name}: ignored cells {silent} do not say why"


def test_the_chapters_that_conftest_runs_last_exist():
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    assert set(conftest.LOADS_ANOTHER_CHAPTERS_MODEL) <= {p.stem for p in NOTEBOOKS}
