"""Fashion-MNIST in memory: find, verify and parse the four IDX files once, then reuse the tensors.

The first load hashes the decompressed files (SHA-256), parses them and saves the tensors to
`<cache>/fashion-mnist/tensors-<key>.safetensors` with a stamp of the source files; later loads
of the same unchanged files read that file directly (well under a second).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fmbench import CLASSES
from fmbench.errors import DataError
from fmbench.data import idx, sources
from fmbench.fileio import atomic_path

logger = logging.getLogger(__name__)

__all__ = ["Dataset", "load_fashion_mnist"]

# tensor name -> source file stem
_FIELDS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


CLASSES_FILE = "classes.txt"


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors field by field is ambiguous
class Dataset:
    """The whole data set as tensors; `source` says where it came from."""
    train_images: torch.Tensor   # (60000, 28, 28) uint8
    train_labels: torch.Tensor   # (60000,) int64
    test_images: torch.Tensor    # (10000, 28, 28) uint8
    test_labels: torch.Tensor    # (10000,) int64
    classes: tuple[str, ...]
    source: str                  # "explicit directory /x", "cache ~/.cache/fmbench/fashion-mnist", ...
    sha256: dict[str, str]       # decompressed-IDX SHA-256 per file stem

    @property
    def identity(self) -> dict[str, Any]:
        """What a run records about its data, and what reuse, resume and compare check: the
        data set's name ("fashion-mnist" when the files are the published ones, else "idx"), a key
        over the four files' SHA-256 (sources.dataset_key), the test set's hash and the class names
        (rundir.DATA_KEYS). The key is what identity compares; the rest names what it stands for."""
        published = all(self.sha256.get(stem) == sha for stem, sha in sources.SHA256.items())
        return {"name": "fashion-mnist" if published else "idx", "key": sources.dataset_key(self.sha256),
                "test_hash": self.test_hash, "classes": list(self.classes)}

    @property
    def test_hash(self) -> str:
        """SHA-256 of the test images' hash followed by the test labels' hash (hex): names the test set."""
        text = self.sha256["t10k-images-idx3-ubyte"] + self.sha256["t10k-labels-idx1-ubyte"]
        return hashlib.sha256(text.encode()).hexdigest()


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, *, mirrors: list[str] | None = None,
                       download: bool = True, verify: bool = True,
                       cache_dir: str | os.PathLike | None = None) -> Dataset:
    """Find (or download), verify and load Fashion-MNIST; raises DataError with one clear line."""
    found = sources.locate(data_dir, cache_dir=cache_dir, mirrors=mirrors, download=download)
    cache = sources.cache_root(cache_dir)
    hashes = sources.recall(found.paths, cache)
    tensors = None
    if hashes is not None:
        if verify:
            for stem, path in found.paths.items():
                sources.check_sha256(stem, path, hashes[stem])
        tensors = _load_tensors(cache / _tensors_name(hashes), hashes)
    if tensors is None:
        start = time.perf_counter()
        tensors, hashes = _parse(found.paths, verify)
        saved = _save(cache, found.paths, hashes, tensors)
        what = "verified and parsed" if verify else "parsed (not verified)"
        logger.info(f"{what} the 4 IDX files in {time.perf_counter() - start:.1f} s"
            + (f"; saved the tensors in {cache} for next time" if saved else ""))
    return Dataset(**tensors, classes=read_classes(found.paths), source=found.source, sha256=hashes)


def read_classes(paths: dict[str, Path]) -> tuple[str, ...]:
    """The class names: `classes.txt` beside the IDX files (one name per line, one per label 0-9),
    else Fashion-MNIST's. A file with the wrong number of names is a DataError naming it."""
    dirs = {p.parent for p in paths.values()}
    for directory in dirs:
        path = directory / CLASSES_FILE
        if not path.is_file():
            continue
        try:
            names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot read the class names ({e})") from None
        if len(names) != len(CLASSES) or len(set(names)) != len(names):
            raise DataError(f"{path}: expected {len(CLASSES)} distinct class names, one per line "
                            f"(labels 0-{len(CLASSES) - 1}), found {len(names)}"
                            + (" with duplicates" if len(set(names)) != len(names) else ""))
        return names
    return CLASSES


def _parse(paths: dict[str, Path], verify: bool) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors, hashes = {}, {}
    for field, stem in _FIELDS.items():
        data = idx.read_idx_bytes(paths[stem])
        hashes[stem] = sources.sha256_bytes(data)
        if verify:  # before parsing: a wrong file is reported as wrong, never used
            sources.check_sha256(stem, paths[stem], hashes[stem])
        parse = idx.parse_images if field.endswith("images") else idx.parse_labels
        tensors[field] = parse(data, paths[stem])
    for split in ("train", "test"):
        idx.check_pair(tensors[f"{split}_images"], tensors[f"{split}_labels"],
                       paths[_FIELDS[f"{split}_images"]], paths[_FIELDS[f"{split}_labels"]])
    return tensors, {s: hashes[s] for s in sources.STEMS}


def _tensors_name(hashes: dict[str, str]) -> str:
    return f"tensors-{sources.dataset_key(hashes)}.safetensors"


def _save(cache: Path, paths: dict[str, Path], hashes: dict[str, str],
          tensors: dict[str, torch.Tensor]) -> bool:
    """Save the tensors and the stamp (both atomically); False (with a note) if the cache is not writable."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    target = cache / _tensors_name(hashes)
    try:
        if not target.is_file() or _load_tensors(target, hashes) is None:
            with atomic_path(target) as tmp:
                save_file(tensors, str(tmp), metadata=hashes)
        sources.remember(paths, hashes, cache)  # after the tensors: a stamp always has its file
    except (OSError, SafetensorError) as e:
        logger.warning(f"note: not caching the parsed data in {cache} ({getattr(e, 'strerror', None) or e})")
        return False
    return True


def _load_tensors(path: Path, hashes: dict[str, str]) -> dict[str, torch.Tensor] | None:
    """The cached tensors (read fully into memory), or None if missing, unreadable or not for these hashes."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        blob = path.read_bytes()
        # safetensors layout: u64 little-endian header length, JSON header (with __metadata__), data
        n = int.from_bytes(blob[:8], "little")
        if json.loads(blob[8:8 + n]).get("__metadata__") != hashes:
            return None
        tensors = load(blob)
    except (OSError, ValueError, AttributeError, SafetensorError):
        return None
    if set(tensors) != set(_FIELDS):
        return None
    for split in ("train", "test"):
        images, labels = tensors[f"{split}_images"], tensors[f"{split}_labels"]
        if (images.dtype != torch.uint8 or images.shape[1:] != idx.IMAGE_SIZE or labels.dtype != torch.int64
                or labels.shape != images.shape[:1]):
            return None
    return tensors
