"""Strict IDX parsing: good files load (gz and raw), every kind of bad file gives one clear error."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fmbench.data import load_fashion_mnist
from fmbench.data.idx import idx_bytes, parse_images, parse_labels, read_idx_bytes
from fmbench.errors import DataError

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"


def _payload(directory: Path, stem: str) -> bytes:
    return gzip.decompress((directory / f"{stem}.gz").read_bytes())


def _write(directory: Path, stem: str, data: bytes, *, raw_gz: bytes | None = None) -> Path:
    path = directory / f"{stem}.gz"
    path.write_bytes(raw_gz if raw_gz is not None else gzip.compress(data, mtime=0))
    return path


def _load(directory: Path):
    return load_fashion_mnist(directory, verify=False, download=False)


def test_idx_round_trip():
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    parsed = parse_images(idx_bytes(images), "x")
    assert parsed.dtype == torch.uint8 and parsed.shape == (5, 28, 28)
    assert np.array_equal(parsed.numpy(), images)
    labels = parse_labels(idx_bytes(np.array([0, 9, 3], dtype=np.uint8)), "y")
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 9, 3]


def test_tiny_gz_loads_with_the_written_values(tiny_idx_dir):
    ds = _load(tiny_idx_dir)
    assert ds.train_images.shape == (40, 28, 28) and ds.train_images.dtype == torch.uint8
    assert ds.test_images.shape == (20, 28, 28)
    assert ds.train_labels.dtype == torch.int64 and ds.test_labels.dtype == torch.int64
    assert set(ds.train_labels.tolist()) == set(range(10)) == set(ds.test_labels.tolist())
    expected = np.frombuffer(_payload(tiny_idx_dir, TRAIN_IMAGES), np.uint8, offset=16).reshape(40, 28, 28)
    assert np.array_equal(ds.train_images.numpy(), expected)
    assert ds.train_labels.tolist() == list(_payload(tiny_idx_dir, TRAIN_LABELS)[8:])


def test_raw_and_gz_give_the_same_tensors(tmp_path, make_tiny_idx):
    gz = _load(make_tiny_idx(tmp_path / "gz", seed=3))
    raw_dir = make_tiny_idx(tmp_path / "raw", seed=3, compress=False)
    assert not list(raw_dir.glob("*.gz"))
    raw = _load(raw_dir)
    assert torch.equal(gz.train_images, raw.train_images) and torch.equal(gz.test_labels, raw.test_labels)
    assert gz.sha256 == raw.sha256  # hashes are of the decompressed bytes


def test_gzip_content_is_detected_even_without_gz_name(tmp_path):
    data = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    (tmp_path / "f").write_bytes(gzip.compress(data))
    assert read_idx_bytes(tmp_path / "f") == data


def _header(ndim_dims: tuple[int, ...], dtype: int = 0x08) -> bytes:
    return bytes([0, 0, dtype, len(ndim_dims)]) + np.asarray(ndim_dims, ">u4").tobytes()


# (stem to replace, new decompressed bytes from the old ones, expected message regex)
BAD_FILES = {
    "wrong magic": (TRAIN_IMAGES, lambda d: b"\x12\x34" + d[2:],
                    r"not an IDX file \(magic number 0x12340803, expected 0x00000803 for images\)"),
    "wrong dtype": (TRAIN_IMAGES, lambda d: d[:2] + b"\x0d" + d[3:],
                    r"IDX data type 0x0d is not unsigned byte \(0x08\)"),
    "images with 2 dims": (TRAIN_IMAGES, lambda d: _header((40, 784)) + d[16:],
                           r"images must have 3 dimensions, header says 2"),
    "labels with 2 dims": (TRAIN_LABELS, lambda d: _header((40, 1)) + d[8:],
                           r"labels must have 1 dimension, header says 2"),
    "truncated data": (TRAIN_IMAGES, lambda d: d[:-10],
                       r"truncated: the header says 40x28x28 = 31360 data bytes, the file has 31350"),
    "trailing bytes": (TRAIN_LABELS, lambda d: d + b"\0\0\0", r"3 trailing bytes after the 40 data"),
    "too short": (TEST_LABELS, lambda d: b"\0\0", r"too short for an IDX file \(2 bytes\)"),
    "truncated header": (TRAIN_IMAGES, lambda d: d[:10], r"truncated IDX header \(10 bytes, the header needs 16\)"),
    "images not 28x28": (TRAIN_IMAGES, lambda d: idx_bytes(np.zeros((40, 32, 32), np.uint8)),
                         r"images are 32x32, expected 28x28"),
    "label out of range": (TRAIN_LABELS, lambda d: d[:13] + b"\x0a" + d[14:],
                           r"label 10 at index 5 is outside 0-9 \(1 bad label\)"),
    "count mismatch": (TEST_LABELS, lambda d: _header((19,), 0x08) + d[8:27],
                       r"t10k-images-idx3-ubyte.gz has 20 images but .*t10k-labels-idx1-ubyte.gz has 19 labels"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_idx_file(case, tiny_idx_dir, run_cli):
    stem, mutate, message = BAD_FILES[case]
    _write(tiny_idx_dir, stem, mutate(_payload(tiny_idx_dir, stem)))
    with pytest.raises(DataError, match=message) as info:
        _load(tiny_idx_dir)
    assert str(tiny_idx_dir) in str(info.value)  # the message names the file

    code, out, err = run_cli("data", "--data-dir", tiny_idx_dir, "--no-verify", "--no-download")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("fmbench: error: ") and "Traceback" not in err
    assert re.search(message, err)


def _flip_middle(gz: bytes) -> bytes:
    mid = len(gz) // 2
    return gz[:mid] + bytes([gz[mid] ^ 0xFF]) + gz[mid + 1:]


BAD_GZIP = {
    "truncated gzip": lambda gz: gz[: len(gz) // 2],
    "corrupt gzip": _flip_middle,
    "not gzip at all": lambda gz: b"plain text, not gzip",
}


@pytest.mark.parametrize("case", list(BAD_GZIP))
def test_bad_gzip(case, tiny_idx_dir, run_cli):
    path = tiny_idx_dir / f"{TRAIN_IMAGES}.gz"
    path.write_bytes(BAD_GZIP[case](path.read_bytes()))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: truncated or corrupt gzip file \(.+\)$"):
        _load(tiny_idx_dir)
    code, _, err = run_cli("data", "--data-dir", tiny_idx_dir, "--no-verify", "--no-download")
    assert code == 2 and err.count("\n") == 1 and "corrupt gzip" in err and "Traceback" not in err
