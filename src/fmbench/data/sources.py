"""Where the Fashion-MNIST files come from, and how we know they are the right ones.

Search order: an explicit directory (argument or FMBENCH_DATA_DIR), the user cache
(FMBENCH_CACHE_DIR, else $XDG_CACHE_HOME/fmbench, else ~/.cache/fmbench), Debian's
/usr/share/datasets/fashion-mnist (FMBENCH_DEBIAN_DIR overrides it), then a download from the
mirrors into the cache. Files are verified by the SHA-256 of their decompressed IDX bytes, so a
recompressed .gz (Debian's) passes. A verification is remembered in `<cache>/verified.json`,
keyed by each file's (resolved path, size, mtime_ns), so it runs once per file.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from fmbench import __version__
from fmbench.errors import ConfigError, DataError
from fmbench.fileio import atomic_path, write_json

logger = logging.getLogger(__name__)

# SHA-256 of the decompressed IDX files (see shared/datasets/README.md), in load order.
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
STEMS = tuple(SHA256)
DOWNLOAD_ORDER = tuple(sorted(STEMS, key=lambda s: ("images" in s, "train" in s)))  # small files first
DEFAULT_MIRRORS = (  # the ones torchvision and Keras use
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
STAMP_FILE = "verified.json"



@dataclass(frozen=True)
class Located:
    """The four files (stem -> path) and a human description of where they were found."""
    paths: dict[str, Path]
    source: str


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`<cache>/fashion-mnist`: the argument, else FMBENCH_CACHE_DIR, XDG_CACHE_HOME/fmbench, ~/.cache/fmbench."""
    from fmbench.fileio import cache_home

    return cache_home(cache_dir) / "fashion-mnist"


def find_files(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """(stem -> path of the files present, stems missing); each file may be raw or .gz."""
    found, missing = {}, []
    for stem in STEMS:
        for name in (stem, stem + ".gz"):
            if (directory / name).is_file():
                found[stem] = directory / name
                break
        else:
            missing.append(stem)
    return found, missing


def locate(data_dir: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None,
           mirrors: Iterable[str] | None = None, download: bool = True) -> Located:
    """Find the four files in search order, downloading into the cache if allowed and needed."""
    mirror_urls = resolve_mirrors(mirrors) if download else []  # a bad URL is an error even if unused
    from_env = data_dir is None and bool(os.environ.get("FMBENCH_DATA_DIR"))
    explicit = data_dir if data_dir is not None else os.environ.get("FMBENCH_DATA_DIR")
    if explicit:
        directory = Path(os.path.abspath(Path(explicit).expanduser()))  # absolute, ".." removed
        via = " (FMBENCH_DATA_DIR)" if from_env else ""
        if not directory.is_dir():
            raise DataError(f"data directory {directory}{via} does not exist or is not a directory")
        found, missing = find_files(directory)
        if missing:
            raise DataError(f"data directory {directory}{via} lacks {', '.join(s + '[.gz]' for s in missing)}")
        return Located(found, f"explicit directory {directory}{via}")

    cache = cache_root(cache_dir)
    found, missing = find_files(cache)
    if not missing:
        return Located(found, f"cache {cache}")
    debian = Path(os.environ.get("FMBENCH_DEBIAN_DIR") or DEBIAN_DIR)
    deb_found, deb_missing = find_files(debian)
    if not deb_missing:
        return Located(deb_found, f"Debian package dataset-fashion-mnist ({debian})")
    if not download:
        raise DataError(
            f"Fashion-MNIST not found in the cache {cache} or in {debian}, and downloading is off: "
            f"install the Debian package dataset-fashion-mnist, pass --data-dir DIR (or set "
            f"FMBENCH_DATA_DIR), or allow the download (drop --no-download)")
    used = fetch(missing, cache, mirror_urls)
    found, _ = find_files(cache)
    return Located(found, f"download from {', '.join(used)} into cache {cache}")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of `data` (one function, so tests can check when hashing happens)."""
    return hashlib.sha256(data).hexdigest()


def check_sha256(stem: str, path: Path, actual: str) -> None:
    """Raise DataError unless `actual` is the published hash of `stem`."""
    expected = SHA256[stem]
    if actual != expected:
        raise DataError(f"{path}: SHA-256 of the decompressed {stem} is {actual}, expected {expected} "
                        f"(corrupt or not Fashion-MNIST; --no-verify accepts another MNIST-like set)")


def dataset_key(hashes: dict[str, str]) -> str:
    """A short name for a set of four files: the first 16 hex digits of the hash of their hashes."""
    return hashlib.sha256("".join(hashes[s] for s in STEMS).encode()).hexdigest()[:16]


def _identity(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def recall(paths: dict[str, Path], cache: Path) -> dict[str, str] | None:
    """The remembered SHA-256 of every file in `paths`, or None unless all four are remembered unchanged."""
    try:
        stamps = json.loads((cache / STAMP_FILE).read_text(encoding="utf-8"))["files"]
        hashes = {}
        for stem, path in paths.items():
            key, size, mtime_ns = _identity(path)
            entry = stamps[key]
            if entry["size"] != size or entry["mtime_ns"] != mtime_ns:
                return None
            hashes[stem] = str(entry["sha256"])
        return hashes
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(paths: dict[str, Path], hashes: dict[str, str], cache: Path) -> None:
    """Record the files' hashes in the stamp file (atomically); raises OSError if the cache is not writable."""
    try:
        stamps = json.loads((cache / STAMP_FILE).read_text(encoding="utf-8"))["files"]
        if not isinstance(stamps, dict):
            stamps = {}
    except (OSError, ValueError, KeyError, TypeError):
        stamps = {}
    for stem, path in paths.items():
        key, size, mtime_ns = _identity(path)
        stamps[key] = {"size": size, "mtime_ns": mtime_ns, "sha256": hashes[stem]}
    write_json(cache / STAMP_FILE, {"format_version": 1, "files": stamps})


def resolve_mirrors(mirrors: Iterable[str] | None = None) -> list[str]:
    """The mirror base URLs: the argument, else FMBENCH_MIRRORS (space-separated), else the defaults."""
    urls = list(mirrors or os.environ.get("FMBENCH_MIRRORS", "").split() or DEFAULT_MIRRORS)
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"mirror {url!r} is not an http:// or https:// URL")
    return [url if url.endswith("/") else url + "/" for url in urls]


def _env_number(name: str, value: float | None, default: float, kind: type) -> float:
    if value is not None:
        return value
    text = os.environ.get(name)
    if not text:
        return default
    try:
        number = kind(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a valid {kind.__name__}") from None
    if number < 0 or (kind is int and number < 1):
        raise ConfigError(f"{name}={text!r} is out of range")
    return number


class _Failed(Exception):
    """One download attempt failed; `retry` says whether the same mirror may succeed next time."""

    def __init__(self, why: str, retry: bool):
        super().__init__(why)
        self.retry = retry


def fetch(stems: Iterable[str], dest: Path, mirrors: list[str], *, retries: int | None = None,
          timeout: float | None = None, backoff: float | None = None) -> list[str]:
    """Download `<stem>.gz` for each stem into `dest`, verified; returns the mirrors used.

    Each mirror gets `retries` attempts (FMBENCH_DOWNLOAD_RETRIES, default 3) with `backoff`
    seconds doubling between them (FMBENCH_DOWNLOAD_BACKOFF, default 1), `timeout` seconds per
    socket operation (FMBENCH_DOWNLOAD_TIMEOUT, default 30); then the next mirror. A file lands in
    `dest` only once its decompressed SHA-256 matches.
    """
    retries = int(_env_number("FMBENCH_DOWNLOAD_RETRIES", retries, 3, int))
    timeout = _env_number("FMBENCH_DOWNLOAD_TIMEOUT", timeout, 30.0, float)
    backoff = _env_number("FMBENCH_DOWNLOAD_BACKOFF", backoff, 1.0, float)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=dest).close()
    except OSError as e:
        raise DataError(f"cannot write to the cache directory {dest} for the download "
                        f"({e.strerror or e}); pass --cache-dir DIR") from None
    stems = [s for s in DOWNLOAD_ORDER if s in set(stems)]
    used: list[str] = []
    for stem in stems:
        name, failures = stem + ".gz", []
        for mirror in mirrors:
            try:
                _download_one(mirror + name, dest / name, stem, retries, timeout, backoff)
            except _Failed as e:
                failures.append(f"{mirror} ({e})")
                continue
            if mirror not in used:
                used.append(mirror)
            break
        else:
            raise DataError(f"could not download {name}: " + "; ".join(failures))
    return used


def _download_one(url: str, target: Path, stem: str, retries: int, timeout: float, backoff: float) -> None:
    for attempt in range(retries):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        logger.info(f"downloading {url}" + (f" (attempt {attempt + 1} of {retries})" if attempt else ""))
        try:
            with atomic_path(target) as tmp:  # a failure removes the temporary file
                _http_get(url, tmp, timeout)
                try:
                    data = gzip.decompress(tmp.read_bytes())
                except (OSError, EOFError, zlib.error) as e:
                    raise _Failed(f"truncated or corrupt gzip: {e or type(e).__name__}", retry=True) from None
                actual = sha256_bytes(data)
                if actual != SHA256[stem]:
                    raise _Failed(f"SHA-256 mismatch for {stem}: got {actual}, expected {SHA256[stem]}",
                                  retry=False)
            logger.info(f"verified {target} ({len(data):,} bytes decompressed)")
            return
        except _Failed as e:
            if not e.retry or attempt == retries - 1:
                raise
            logger.warning(f"  failed: {e}")


def _http_get(url: str, path: Path, timeout: float) -> None:
    """Write the body of `url` to `path`; raise _Failed with a short reason on any failure."""
    request = urllib.request.Request(url, headers={"User-Agent": f"fmbench/{__version__}"})
    got, expected = 0, None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(path, "wb") as f:
            length = response.headers.get("Content-Length", "")
            expected = int(length) if length.isdigit() else None
            while chunk := response.read(1 << 20):
                f.write(chunk)
                got += len(chunk)
    except urllib.error.HTTPError as e:
        raise _Failed(f"HTTP {e.code} {e.reason}", retry=e.code >= 500) from None
    except urllib.error.URLError as e:
        raise _Failed(f"cannot connect: {e.reason}", retry=True) from None
    except http.client.IncompleteRead as e:
        raise _Failed(f"connection closed after {got + len(e.partial)} of {expected} bytes", retry=True) from None
    except TimeoutError:
        raise _Failed(f"timed out after {timeout:g} s", retry=True) from None
    except (http.client.HTTPException, OSError) as e:
        raise _Failed(f"{type(e).__name__}: {e}", retry=True) from None
    if expected is not None and got != expected:
        raise _Failed(f"connection closed after {got} of {expected} bytes", retry=True)
