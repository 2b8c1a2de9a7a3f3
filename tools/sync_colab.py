"""Keep every notebook's Colab link and Colab set-up cell in line with ``_config.yml``.

``_config.yml``'s ``repository.url`` and ``repository.branch`` are the one place that
names the repository. Each notebook carries two copies: the "Open in Colab" link in its
first cell and the ``pip install git+...`` line of its Colab set-up cell.

    python tools/sync_colab.py           # rewrite notebooks that disagree (make book does this)
    python tools/sync_colab.py --check   # list disagreements and exit 1 if there are any
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"']+")
INSTALL = re.compile(r"git\+https://[^\s\"'@]+(?:@[^\s\"']+)?")


def repository() -> tuple[str, str]:
    """``(url, branch)`` from ``_config.yml``, with the URL's trailing slash and ``.git`` removed."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    repo = config["repository"]
    url = repo["url"].rstrip("/").removesuffix(".git")
    return url, repo.get("branch", "main")


def expected(notebook: Path) -> tuple[str, str]:
    """The Colab link and the install target this notebook should carry."""
    url, branch = repository()
    github = url.removeprefix("https://github.com/")
    rel = notebook.resolve().relative_to(ROOT).as_posix()
    return (
        f"https://colab.research.google.com/github/{github}/blob/{branch}/{rel}",
        f"git+{url}@{branch}",
    )


def problems(notebook: Path) -> list[str]:
    """What in ``notebook`` disagrees with ``_config.yml`` (empty when all agree)."""
    link, install = expected(notebook)
    text = "\n".join(cell.source for cell in nbformat.read(notebook, as_version=4).cells)
    found = []
    links, installs = set(COLAB_LINK.findall(text)), set(INSTALL.findall(text))
    if links != {link}:
        found.append(f"{notebook.name}: Colab link {sorted(links) or 'missing'}, expected {link}")
    if installs != {install}:
        found.append(
            f"{notebook.name}: install {sorted(installs) or 'missing'}, expected {install}"
        )
    return found


def sync(notebook: Path) -> bool:
    """Rewrite the links in ``notebook`` to the expected ones; True if it changed."""
    link, install = expected(notebook)
    nb = nbformat.read(notebook, as_version=4)
    changed = False
    for cell in nb.cells:
        new = INSTALL.sub(install, COLAB_LINK.sub(link, cell.source))
        if new != cell.source:
            cell.source, changed = new, True
    if changed:
        nbformat.write(nb, notebook)
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report disagreements")
    args = parser.parse_args()
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if args.check:
        found = [p for nb in notebooks for p in problems(nb)]
        print("\n".join(found) or f"{len(notebooks)} notebooks agree with _config.yml")
        return 1 if found else 0
    for nb in notebooks:
        if sync(nb):
            print(f"updated the Colab links of {nb.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
