"""Strict IDX parsing (the format of the MNIST family): bytes -> uint8/int64 tensors, no per-sample Python.

An IDX file is a 4-byte magic number `00 00 <dtype> <ndim>`, then `ndim` big-endian uint32 sizes,
then the data in C order. Fashion-MNIST uses dtype 0x08 (unsigned byte): images are 3-D
(N, 28, 28), labels 1-D (N,). Every check below raises a DataError that names the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from fmbench.errors import DataError

UBYTE = 0x08
IMAGE_SIZE = (28, 28)
NUM_CLASSES = 10
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx_bytes(path: str | Path) -> bytes:
    """The decompressed IDX bytes of `path` (gzip if named .gz or starting with the gzip magic)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if path.suffix != ".gz" and not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        # BadGzipFile (an OSError) for a bad header or CRC, EOFError when truncated, zlib.error for corrupt data
        why = str(e) or type(e).__name__
        raise DataError(f"{path}: truncated or corrupt gzip file ({why})") from None


def _parse(data: bytes, name: str | Path, ndim: int, kind: str) -> np.ndarray:
    """Check the IDX header of `data` (magic, dtype, ndim, size) and view the payload as uint8."""
    if len(data) < 4:
        raise DataError(f"{name}: too short for an IDX file ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    expected_magic = (UBYTE << 8) | ndim
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{name}: not an IDX file (magic number 0x{magic:08x}, "
                        f"expected 0x{expected_magic:08x} for {kind})")
    if data[2] != UBYTE:
        raise DataError(f"{name}: IDX data type 0x{data[2]:02x} is not unsigned byte (0x08) "
                        f"(magic number 0x{magic:08x})")
    if data[3] != ndim:
        raise DataError(f"{name}: {kind} must have {ndim} dimension{'s' * (ndim > 1)}, header says "
                        f"{data[3]} (magic number 0x{magic:08x}, expected 0x{expected_magic:08x})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header ({len(data)} bytes, the header needs {header})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(dims, dtype=np.int64))
    shape = "x".join(map(str, dims))
    if len(data) - header < size:
        raise DataError(f"{name}: truncated: the header says {shape} = {size} data bytes, "
                        f"the file has {len(data) - header}")
    if len(data) - header > size:
        raise DataError(f"{name}: {len(data) - header - size} trailing bytes after the {shape} data "
                        f"the header describes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def parse_images(data: bytes, name: str | Path) -> torch.Tensor:
    """Images from IDX `data` as a (N, 28, 28) uint8 tensor."""
    arr = _parse(data, name, 3, "images")
    if arr.shape[1:] != IMAGE_SIZE:
        raise DataError(f"{name}: images are {arr.shape[1]}x{arr.shape[2]}, expected 28x28")
    return torch.from_numpy(arr.copy())  # copy: frombuffer over bytes is read-only


def parse_labels(data: bytes, name: str | Path) -> torch.Tensor:
    """Labels from IDX `data` as a (N,) int64 tensor; every value must be a class index 0-9."""
    arr = _parse(data, name, 1, "labels")
    bad = np.flatnonzero(arr >= NUM_CLASSES)
    if bad.size:
        raise DataError(f"{name}: label {int(arr[bad[0]])} at index {int(bad[0])} is outside 0-9 "
                        f"({bad.size} bad label{'s' * (bad.size > 1)})")
    return torch.from_numpy(arr.astype(np.int64))


def check_pair(images: torch.Tensor, labels: torch.Tensor, images_name: str | Path,
               labels_name: str | Path) -> None:
    """Raise DataError unless there is exactly one label per image."""
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_name} has {images.shape[0]} images but {labels_name} has "
                        f"{labels.shape[0]} labels")


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX bytes (the inverse of parsing; used by tests and exports)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, UBYTE, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.tobytes()
