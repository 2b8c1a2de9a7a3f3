"""A file lock, so that two processes that would write the same files take turns: two
notebooks or test processes training one cached model (``checkpoint``), or extracting
the same data set (``data``)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

_HELD: dict[str, list] = {}  # lock file -> [open file, depth]: this process's held locks


@contextmanager
def exclusive(path: str | Path):
    """Hold an exclusive lock on ``path`` (a ``<path>.lock`` file beside it) for a block.

    Two processes that train into the same checkpoint (two notebooks open at once, or two
    test processes that need the same cached model) then take turns: the second waits and
    finds the first one's finished checkpoint. Re-entrant within a process. Where the
    operating system has no ``fcntl`` (Windows) it does nothing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    key = str(Path(str(path) + ".lock").resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    Path(key).parent.mkdir(parents=True, exist_ok=True)
    handle = open(key, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)  # waits while another process holds it
        _HELD[key] = [handle, 1]
        try:
            yield
        finally:
            del _HELD[key]
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()
