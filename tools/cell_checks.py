"""The rules for checks in chapters (issue #20, item 3), read from the cells themselves.

    python tools/cell_checks.py [notebooks/NN_x.ipynb ...]

prints, per chapter, every cell that breaks a rule and the share of visible code comments
that are about the tests or the machines rather than about the VAE. ``tests/test_book.py``
asserts the same rules.

- nbval compares a code cell's output unless its tags or a marker comment say otherwise; we
  decide that with nbval's own functions, so the two cannot disagree.
- A cell nbval does not compare is tagged ``nbval-ignore-output`` and says, in its metadata
  ``nbval.why_not_compared``, what in its output depends on what.
- A compared cell that prints a decimal (45.8, 60.1%, 9e-04) says, in
  ``nbval.why_compared``, why those digits print the same on every machine.
- A reason is specific: at least six words, three of them not generic ("depends on the
  machine, not compared" names nothing).
- Marker comments (``# NBVAL_IGNORE_OUTPUT``) are not used: tags only.
- A collapsed check (tag ``hide-input``) has a one-line label, ``mystnb.code_prompt_show``.
"""

from __future__ import annotations

import io
import re
import sys
import tokenize
from pathlib import Path

import nbformat
from nbval.plugin import find_comment_markers, find_metadata_tags

# A decimal with any digits after the point (not a version such as 2.5.1), a percentage
# (60%, 60.1%), or e-notation (9e-04, 1.5e-3).
DECIMAL = re.compile(
    r"(?<![\w.])\d+(?:\.\d+)?[eE][-+]?\d+\b"
    r"|(?<![\w.])\d+\.\d+(?!\d|\.\d)"
    r"|(?<![\w.])\d+%"
)
# matplotlib's repr of a figure prints the size the code asked for: exact.
FIGURE_REPR = re.compile(r"<Figure size [\d.]+x[\d.]+ with \d+ Axes>")

# Words that say nothing about which output varies or why.
GENERIC = set(
    """a an the and or of on in at to by for from with it its it's this that these those is are
    be been was were as so not no any every each all other another same different differs
    differ depend depends depending dependent vary varies varying change changes may can could
    might will would output outputs value values number numbers result results figure figures
    print prints printed cell cells compare compared compares comparison test tests tested
    machine machines computer computers cpu cpus gpu gpus platform platforms hardware
    everywhere anywhere here there exact exactly reason why because which whose what where
    when run runs nbval ignore ignored always never""".split()
)
HIDDEN = {"hide-input", "hide-cell", "remove-input", "remove-cell", "colab-setup"}
# A comment about the tests or the machines that wrote the outputs, not about the VAE.
ABOUT_TESTS = re.compile(
    r"\bnbval\b|\bpytest\b|\bcompared\b|\bcomparison\b|\bthe tests\b|\bunit tests?\b"
    r"|\bassert(?:s|ed)\b|\bassert only\b|\bchecked with\b|\bportab\w*"
    r"|\bmachines?\b|\bthreads?\b|\b(?-i:[CG]PUs?)\b|\bH100\b|\bH200\b|\bAVX"
    r"|\blast digits?\b|\bwrote this page\b|\bprinted run\b|\brun-to-run\b|\brounding boundary\b"
    r"|\b(?:float|float32|float64) noise\b|\bround(?:s|ed|ing)? (?:it )?the same\b"
    r"|\bmargins? of\b|\bprinted value\b",
    re.IGNORECASE,
)


def nbval_options(cell) -> dict:
    """What nbval will do with a code cell: tags first, then marker comments (nbval 0.11's
    rule: a comment line that is exactly a marker wins over a tag)."""
    options = dict(find_metadata_tags(cell.metadata))
    options.update(find_comment_markers(cell.source))
    return options


def is_compared(cell) -> bool:
    """Whether ``pytest --nbval`` (strict) compares this code cell's output."""
    options = nbval_options(cell)
    return not options.get("skip", False) and options.get("check", True)


def printed_text(cell) -> str:
    """Every text nbval compares for this cell (streams and text/* data), figure reprs out."""
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts += [v for k, v in out.get("data", {}).items() if k.startswith("text/")]
    text = "".join(p if isinstance(p, str) else "".join(p) for p in parts)
    return FIGURE_REPR.sub("", text)


def reason_problem(reason) -> str | None:
    """None if ``reason`` is specific; else what is wrong with it."""
    if not isinstance(reason, str) or not reason.strip():
        return "empty reason"
    words = re.findall(r"[\w'-]+", reason.lower())
    specific = [w for w in words if w not in GENERIC and not w.isdigit()]
    if len(words) < 6 or len(specific) < 3:
        return f"generic reason {reason!r}: name what in the output varies and why"
    return None


def cell_problems(nb) -> list[str]:
    """Every broken rule of a notebook, as 'Cell i: what' (i counts code cells, as nbval)."""
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code):
        why = cell.metadata.get("nbval", {})
        tags = cell.metadata.get("tags", [])
        label = cell.metadata.get("mystnb", {}).get("code_prompt_show", "")
        if "hide-input" in tags and not (label.strip() and "\n" not in label):
            problems.append(f"Cell {i}: collapsed without a one-line mystnb.code_prompt_show")
        if list(find_comment_markers(cell.source)):
            problems.append(f"Cell {i}: a marker comment; use the tag nbval-ignore-output")
        if not is_compared(cell):
            if "nbval-ignore-output" in tags or "nbval-skip" in tags:
                bad = reason_problem(why.get("why_not_compared"))
                if bad:
                    problems.append(f"Cell {i}: not compared, nbval.why_not_compared: {bad}")
            if "why_compared" in why:
                problems.append(f"Cell {i}: has nbval.why_compared but is not compared")
            continue
        if "why_not_compared" in why:
            problems.append(f"Cell {i}: has nbval.why_not_compared but is compared")
        found = DECIMAL.search(printed_text(cell))
        if found or "why_compared" in why:
            bad = reason_problem(why.get("why_compared"))
            if bad:
                shown = f"prints {found.group()!r}, " if found else ""
                problems.append(f"Cell {i}: compared, {shown}nbval.why_compared: {bad}")
    return problems


def visible_comments(nb) -> list[tuple[int, str, bool]]:
    """(code cell number, comment, about the tests or machines) for every comment line of
    the code the website shows. Consecutive lines that hold only a comment are one comment:
    a line of it is about the tests if any line of it is."""
    found = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code):
        if HIDDEN & set(cell.metadata.get("tags", [])):
            continue
        source = "\n".join(
            "" if line.lstrip().startswith(("%", "!")) else line
            for line in cell.source.splitlines()
        )
        blocks: list[list[tuple[int, str, bool]]] = []
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type != tokenize.COMMENT:
                continue
            row = tok.start[0]
            alone = not tok.line[: tok.start[1]].strip()  # a comment on its own line
            if alone and blocks and blocks[-1][-1][0] == row - 1 and blocks[-1][-1][2]:
                blocks[-1].append((row, tok.string, alone))
            else:
                blocks.append([(row, tok.string, alone)])
        for block in blocks:
            about = any(ABOUT_TESTS.search(text) for _, text, _ in block)
            found += [(i, text, about) for _, text, _ in block]
    return found


def comment_share(paths) -> tuple[int, int]:
    """(comments about the tests or machines, all visible comments) over the notebooks."""
    about = total = 0
    for path in paths:
        comments = visible_comments(nbformat.read(path, as_version=4))
        about += sum(a for _, _, a in comments)
        total += len(comments)
    return about, total


def main(names: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    paths = [Path(n) for n in names] or sorted((root / "notebooks").glob("*.ipynb"))
    broken = 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        about, total = comment_share([path])
        print(f"{path.name}: {about} of {total} visible comments about tests or machines")
        for problem in cell_problems(nb):
            print(f"  {problem}")
            broken += 1
        for i, text, is_about in visible_comments(nb):
            if is_about:
                print(f"  Cell {i} comment: {text}")
    about, total = comment_share(paths)
    print(f"all: {about} of {total} ({about / max(total, 1):.1%}); {broken} broken rules")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
