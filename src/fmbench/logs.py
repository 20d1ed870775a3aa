"""fmbench's messages: module loggers under "fmbench", one stderr handler, and how much it shows.

Every module logs with `logging.getLogger(__name__)`; nothing passes a log function around. As
Optuna does, the "fmbench" logger has its own handler (plain messages on stderr at INFO) and does
not propagate, so a notebook and the command line show the same lines with no set-up. The CLI's
`-q`/`-v` and the API's `quiet=True` change the level; `logging.getLogger("fmbench")` is yours to
reconfigure. Progress bars are tqdm's, on stderr.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Iterator

ROOT = "fmbench"


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a message is logged (a test's capture, a notebook)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _root() -> logging.Logger:
    root = logging.getLogger(ROOT)
    if not any(isinstance(h, _Stderr) for h in root.handlers):
        root.addHandler(_Stderr())
        root.setLevel(logging.INFO)
        root.propagate = False
    return root


def set_verbosity(level: int) -> None:
    """Show fmbench's messages at `level` (logging.INFO by default, WARNING for -q, DEBUG for -v)."""
    _root().setLevel(level)


def set_prefix(prefix: str) -> None:
    """Begin every message with `prefix` (a worker process names itself: "[worker 2] ")."""
    for h in _root().handlers:
        if isinstance(h, _Stderr):
            h.setFormatter(logging.Formatter(prefix.replace("%", "%%") + "%(message)s"))


@contextmanager
def quiet(on: bool = True) -> Iterator[None]:
    """Within the block, show only warnings and errors (when `on`)."""
    root = _root()
    before = root.level
    if on:
        root.setLevel(max(before, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(before)


_root()
