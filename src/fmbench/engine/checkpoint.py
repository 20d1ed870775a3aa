"""Checkpoints: weights in safetensors, training state via torch.save loaded with weights_only=True.

Everything is written to a temporary file and renamed, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from fmbench.errors import RunDirError
from fmbench.fileio import atomic_path, write_bytes


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write tensors as safetensors, atomically. Serialised in memory (a few MB) and written by our
    own writer, so that a full disk or a refused write is an OSError naming the file, and the old
    file, if any, stays intact."""
    write_bytes(path, save(tensors, metadata=metadata))


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write the model's state dict (tensors made contiguous, on CPU) to a safetensors file."""
    save_tensors(path, {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, metadata)


def load_weights(model: nn.Module, path: Path, expected_sha256: str | None = None) -> None:
    """Load safetensors weights into `model` (strict); a bad file or a wrong hash is a RunDirError."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: weights file is missing")
    if expected_sha256 is not None:
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected_sha256:
            raise RunDirError(f"{path}: SHA-256 mismatch (expected {expected_sha256}, got {actual}); refusing to load")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise RunDirError(f"{path}: not a readable safetensors file ({e})") from None
    device = next(model.parameters()).device
    reference = model.state_dict()
    state = {k: v.to(device=device, dtype=reference[k].dtype) if k in reference else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise RunDirError(f"{path}: weights do not match the model ({first})") from None


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Save optimizer/scheduler/early-stopping/RNG state (tensors and plain Python values only)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict[str, Any]:
    """Load a training state saved by `save_state`; never unpickles arbitrary objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunDirError(f"{path}: training state is missing") from None
    except Exception as e:  # corrupt file, or one holding objects weights_only refuses
        raise RunDirError(f"{path}: unreadable training state ({type(e).__name__}: {e})") from None
