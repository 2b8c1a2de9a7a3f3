"""Where the book keeps its files: the MNIST data root and the checkpoint cache.

Both can be set with an environment variable. Otherwise, in a source checkout of the
book they live at the repository root (``data/`` and ``.cache/``, both git-ignored);
in an installed copy (Colab, ``pip install``) they live under ``~/.cache/vae-tutorial``.
Nothing here depends on the current working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "VAE_TUTORIAL_DATA"
CACHE_ENV = "VAE_TUTORIAL_CACHE"


def repository_root() -> Path | None:
    """The book's repository root if this package runs from a source checkout, else None."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "vae-tutorial"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vae-tutorial"


def data_root() -> Path:
    """MNIST's root folder: ``$VAE_TUTORIAL_DATA``, else ``<repo>/data``, else the user cache."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    root = repository_root()
    return root / "data" if root else _user_cache() / "data"


def cache_root() -> Path:
    """Checkpoint cache: ``$VAE_TUTORIAL_CACHE``, else ``<repo>/.cache``, else the user cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    root = repository_root()
    return root / ".cache" if root else _user_cache() / "checkpoints"
