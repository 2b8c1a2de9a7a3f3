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


def test_files_are_numbered_in_the_order_the_website_shows_them():
    # The website numbers chapters across the numbered parts of _toc.yml; a file's prefix is
    # that number (01, 02, ...), and an unnumbered part (the appendix) uses letters (A_...).
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    number, letters = 0, 0
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            stem = Path(chapter["file"]).name
            if not chapter["file"].startswith("notebooks/"):
                continue
            if part.get("numbered"):
                number += 1
                assert stem.startswith(f"{number:02d}_"), f"{stem} is shown as chapter {number}"
            else:
                assert stem.startswith(f"{'ABCDEFGH'[letters]}_"), f"{stem} is an appendix"
                letters += 1


HARD_CODED = re.compile(r"\b(?:chapters?|ch\.)[ \t]*\d", re.IGNORECASE)
LINKED_NOTEBOOK = re.compile(r"\]\(([^)\s#]+\.ipynb)(?:#[^)]*)?\)")


def texts() -> list[tuple[str, Path, str]]:
    """(where, folder links are relative to, text) for every page a reader can see."""
    found = []
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            outputs = [o.get("text", "") for o in cell.get("outputs", [])]
            text = "\n".join([cell.source] + [t if isinstance(t, str) else "" for t in outputs])
            found.append((f"{path.name} cell {i}", path.parent, text))
    for path in [ROOT / "README.md", *sorted((ROOT / "book").glob("*.md"))]:
        found.append((str(path.relative_to(ROOT)), path.parent, path.read_text()))
    for path in sorted((ROOT / "vae_tutorial").glob("*.py")):
        found.append((str(path.relative_to(ROOT)), path.parent, path.read_text()))
    return found


def test_no_chapter_is_referred_to_by_its_number():
    # A chapter's number changes when a chapter is inserted; a link to its file does not.
    # Write "the [ELBO chapter](06_elbo.ipynb)", never "chapter 5".
    bad = [f"{where}: {m.group(0)!r}" for where, _, t in texts() for m in HARD_CODED.finditer(t)]
    assert bad == [], "refer to chapters by a link to their file:\n" + "\n".join(bad)


def test_links_to_chapters_point_at_existing_files():
    bad = [
        f"{where}: {m.group(1)}"
        for where, folder, text in texts()
        for m in LINKED_NOTEBOOK.finditer(text)
        if not m.group(1).startswith("http") and not (folder / m.group(1)).exists()
    ]
    assert bad == [], "\n".join(bad)


def test_the_chapter_reference_checks_can_fail():
    assert HARD_CODED.search("as chapter 7 showed") and HARD_CODED.search("Chapters 2-6")
    assert not HARD_CODED.search("the [latent-space chapter](08_latent_space.ipynb)")
    assert LINKED_NOTEBOOK.search("see [x](07_training.ipynb#a-section)").group(1) == (
        "07_training.ipynb"
    )
