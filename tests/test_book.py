"""The book's structure: every chapter is in the table of contents, follows the template,
is committed executed, opens in Colab from the repository named in _config.yml, and says
in cell metadata, not in visible comments, why each output is or is not compared."""

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def load_tool(name: str):
    """A script of tools/, imported as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync_colab = load_tool("sync_colab")


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
    # other dropdowns hold derivations and caveats
    solutions = markdown.count(":::{admonition} Solution\n:class: dropdown")
    assert 2 <= solutions <= 4, "2-4 exercises with hidden solutions"
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


cell_checks = load_tool("cell_checks")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_says_why_its_output_is_or_is_not_compared(path):
    """The book's rule: nbval compares only what prints the same on every CPU, thread count
    and GPU. A cell tagged nbval-ignore-output says in its metadata
    (nbval.why_not_compared) what in its output depends on what; a compared cell that
    prints a decimal says (nbval.why_compared) why those digits cannot change. Reasons are
    specific, nbval is steered by tags only, never by marker comments, and a collapsed
    check has a one-line label."""
    problems = cell_checks.cell_problems(nbformat.read(path, as_version=4))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_visible_comments_are_about_the_vae_not_the_tests():
    """At most 5% of the comments a reader sees in code cells are about the tests, what is
    compared, tolerances' provenance, threads or the machines that wrote the outputs;
    that bookkeeping lives in cell metadata."""
    about, total = cell_checks.comment_share(NOTEBOOKS)
    per_chapter = {p.stem: cell_checks.comment_share([p]) for p in NOTEBOOKS}
    print(f"comments about tests or machines: {about} of {total}")
    print({stem: f"{a}/{t}" for stem, (a, t) in per_chapter.items() if a})
    assert about <= 0.05 * total, (
        f"{about} of {total} visible comments are about tests or machines: "
        f"{ {stem: a for stem, (a, _) in per_chapter.items() if a} }"
    )


def planted(source: str, printed: str = "", tags=(), **nbval) -> nbformat.NotebookNode:
    """A one-cell notebook, as a chapter would hold it."""
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed)]
    if tags:
        cell.metadata["tags"] = list(tags)
    if nbval:
        cell.metadata["nbval"] = nbval
    nb = nbformat.v4.new_notebook()
    nb.cells = [cell]
    return nb


SPECIFIC = "the losses of a ten-epoch training run: summation order differs across CPUs"


def test_the_reason_checks_can_fail():
    ignored = ("nbval-ignore-output",)
    problems = cell_checks.cell_problems
    assert problems(planted("print(loss)", "45.8", ignored, why_not_compared=SPECIFIC)) == []
    # an ignored cell with no reason, an empty one, or generic words only
    assert problems(planted("print(loss)", "45.8", ignored))
    assert problems(planted("print(loss)", "45.8", ignored, why_not_compared=""))
    generic = "the output depends on the machine, so it is not compared"
    assert problems(planted("print(loss)", "45.8", ignored, why_not_compared=generic))
    assert problems(planted("print(loss)", "45.8", ignored, why_not_compared="varies"))
    # a compared decimal without its reason, in every notation
    for printed in ("loss 45.8 nats", "60.1% right", "60% right", "lr 9e-04", "1.5e-3"):
        assert problems(planted("print(x)", printed)), printed
        assert problems(planted("print(x)", printed, why_compared="exact")), printed
        assert not problems(planted("print(x)", printed, why_compared=SPECIFIC)), printed
    # a marker inside a string or after code exempts nothing: nbval reads whole lines
    for source in (
        'print("NBVAL_IGNORE_OUTPUT", x)',
        'label = "# NBVAL_IGNORE_OUTPUT"\nprint(x)',
        "print(x)  # NBVAL_IGNORE_OUTPUT",
    ):
        assert cell_checks.is_compared(planted(source).cells[0]), source
        assert problems(planted(source, "45.8")), source
    # a real marker comment turns comparison off, as in nbval, and is refused: tags only
    marked = planted("# NBVAL_IGNORE_OUTPUT\nprint(x)", "45.8", why_not_compared=SPECIFIC)
    assert not cell_checks.is_compared(marked.cells[0])
    assert any("marker comment" in p for p in problems(marked))
    # a reason that contradicts the tags
    assert problems(planted("print(x)", "2", why_not_compared=SPECIFIC))
    # a collapsed check without its one-line label
    collapsed = planted("assert x == 2", tags=("hide-input",))
    assert problems(collapsed)
    collapsed.cells[0].metadata["mystnb"] = {"code_prompt_show": "Show the check: x is 2"}
    assert problems(collapsed) == []


def test_what_is_clearly_exact_is_not_a_decimal():
    for exact in ("469 steps", "60,000 images", "(8, 1, 28, 28)", "torch 2.5.1", "epoch 1/2"):
        assert not cell_checks.DECIMAL.search(exact), exact
    assert not cell_checks.DECIMAL.search(
        cell_checks.printed_text(
            planted("plt.show()", "<Figure size 552x161.6 with 2 Axes>").cells[0]
        )
    )
    found = [m.group() for m in cell_checks.DECIMAL.finditer("45.8 60% 60.1% 9e-04 1.5e-3 0.0")]
    assert found == ["45.8", "60%", "60.1", "9e-04", "1.5e-3", "0.0"]


def test_the_comment_share_counts_bookkeeping_and_spares_teaching(tmp_path):
    bookkeeping = (
        "# Output not compared by the tests: the losses depend on the machine;\n"
        "# the claims are asserted below.\n"
        "x = 1  # 60% on the machine that wrote this page\n"
    )
    teaching = "# KL(q || p) in nats, (B,)\nkl = 1  # the test set's mean image\n"
    comments = cell_checks.visible_comments(planted(bookkeeping + teaching))
    assert [about for _, _, about in comments] == [True, True, True, False, False]
    assert cell_checks.visible_comments(planted(bookkeeping, tags=("hide-input",))) == []
    # a chapter written that way fails the 5% the book allows
    path = tmp_path / "planted.ipynb"
    nbformat.write(planted(bookkeeping + teaching), path)
    assert cell_checks.comment_share([path]) == (3, 5)


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
