"""Atomic file writes: write to a temporary file in the same directory, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


LOCK_FILE = ".lock"


def cache_home(override: str | os.PathLike | None = None) -> Path:
    """Where fmbench keeps its caches (data, compiled kernels): `override`, else FMBENCH_CACHE_DIR,
    else XDG_CACHE_HOME/fmbench, else ~/.cache/fmbench. One setting moves every cache."""
    base = override or os.environ.get("FMBENCH_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) / "fmbench" if xdg else Path.home() / ".cache" / "fmbench"
    return Path(base).expanduser()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())    # mkstemp makes 0600; a plain open() would not
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextmanager
def writer_lock(directory: str | os.PathLike, what: str = "run directory") -> Iterator[None]:
    """Hold an OS lock (flock on DIR/.lock) while writing DIR. A second writer fails at once with
    a RunDirError naming the directory and the holding process; readers never need the lock.
    The lock dies with its process, so a killed run leaves nothing to clean up."""
    from fmbench.errors import RunDirError

    try:
        import fcntl
    except ImportError:  # pragma: no cover - not a POSIX system: no lock
        yield
        return
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    f = open(directory / LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RunDirError(f"{directory}: this {what} is being written by {holder}; "
                              "wait for it to finish or choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}\n")
        f.flush()
        yield
    finally:
        f.close()                              # closing releases the lock


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or malformed file raises RunDirError naming it."""
    from fmbench.errors import RunDirError

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path}: file is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path}: not valid JSON ({e})") from None
