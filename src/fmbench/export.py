"""ONNX export of any registered model, checked with ONNX Runtime right after export.

The file takes what the model takes: float32 (N, 1, 28, 28) in [0, 1], a light garment on a dark
background as in Fashion-MNIST, with a dynamic batch dimension, and returns logits (N, 10).
PyTorch's TorchScript-based exporter (`dynamo=False`) is used: it needs no extra package and
exports the ViT's `scaled_dot_product_attention` as MatMul/Softmax nodes, and flip averaging
(`tta_flip`) as part of the graph. Beside FILE.onnx goes FILE.json, a card: source, SHA-256,
opset, input/output, and the check (top-1 agreement with PyTorch, largest probability difference).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from fmbench.errors import ConfigError, RunDirError
from fmbench.fileio import atomic_path, read_json, write_json

DEFAULT_OPSET = 17
N_CHECK = 1000            # real test images in the check after export


def _session(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("ONNX Runtime is not installed: pip install 'fmbench[export]'") from None
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for a bad file
        raise RunDirError(f"{path}: not a loadable ONNX model ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def onnx_logits(session, images: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Logits (N, C) of uint8 images (N, 28, 28) from an ONNX Runtime session."""
    name = session.get_inputs()[0].name
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size, None].float().div(255).numpy()
        out.append(session.run(None, {name: x})[0])
    return np.concatenate(out) if out else np.zeros((0, 10), dtype=np.float32)


def check_target(path: Path, opset: int) -> None:
    """A ConfigError unless `path` ends in .onnx and `opset` is one the exporter writes."""
    if Path(path).suffix != ".onnx":
        raise ConfigError(f"--onnx {path}: the file name must end in .onnx")
    if not 7 <= opset <= 21:
        raise ConfigError(f"--opset must be between 7 and 21, got {opset}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def shipped_source(name_or_path: str | Path) -> dict[str, str]:
    """The card's `source` for shipped weights (a name, or a .safetensors with its card): it and the file's SHA-256."""
    from fmbench.weights import resolve

    return {"weights": str(name_or_path), "sha256": _sha256(resolve(name_or_path)[0])}


def run_source(run_dir: Path, rc: Any) -> dict[str, str]:
    """The card's `source` for a run directory: it, its config hash and the SHA-256 of the weights its recipe keeps."""
    from fmbench.runs import weights_file

    return {"run_dir": str(run_dir), "config_hash": rc.hash, "sha256": _sha256(weights_file(run_dir, rc))}


def export_onnx(model: nn.Module, model_name: str, source: dict[str, Any], path: Path, check_images: torch.Tensor,
                opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """Export `model` (eval mode, CPU, float32) to `path`, check it on `check_images`; returns the card."""
    import warnings

    path = Path(path)
    check_target(path, opset)
    model = model.cpu().float().eval()
    example = torch.rand(2, 1, 28, 28)
    t0 = time.perf_counter()
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")                      # tracer warnings on shape checks: expected
        torch.onnx.export(model, (example,), str(tmp), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                          dynamo=False)
    seconds = time.perf_counter() - t0
    check = compare_with_torch(model, _session(path), check_images[:N_CHECK])
    card = {"format": "fmbench-onnx-1", "model": model_name, "source": source, "opset": opset,
            "exporter": f"torch.onnx.export (TorchScript, dynamo=False), torch {torch.__version__}",
            "input": {"name": "image", "dtype": "float32", "shape": ["batch", 1, 28, 28],
                      "range": "[0, 1], light garment on a dark background (as Fashion-MNIST)"},
            "output": {"name": "logits", "shape": ["batch", 10]},
            "sha256": _sha256(path), "bytes": path.stat().st_size,
            "export_seconds": round(seconds, 2), "check": check}
    write_json(path.with_suffix(".json"), card)
    return card


@torch.inference_mode()
def compare_with_torch(model: nn.Module, session, images: torch.Tensor) -> dict[str, Any]:
    """Top-1 agreement and the largest softmax-probability difference between PyTorch and ONNX Runtime."""
    ort_logits = onnx_logits(session, images)
    torch_logits = model(images[:, None].float().div(255)).numpy()
    p_ort, p_torch = _softmax(ort_logits), _softmax(torch_logits)
    return {"images": int(len(images)), "top1_agreement": float((ort_logits.argmax(1) == torch_logits.argmax(1)).mean()),
            "max_prob_diff": float(np.abs(p_ort - p_torch).max()) if len(images) else 0.0}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def evaluate_onnx(path: Path, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Accuracy of an exported file on (images, labels) with ONNX Runtime, beside its card's model."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: no such ONNX file")
    card_path = path.with_suffix(".json")
    card = read_json(card_path) if card_path.is_file() else {}
    if card.get("sha256") and card["sha256"] != _sha256(path):
        raise RunDirError(f"{path}: SHA-256 differs from its card {card_path.name}; the file was changed after export")
    logits = onnx_logits(_session(path), images)
    from fmbench.engine.metrics import report

    preds = torch.from_numpy(logits.argmax(1))
    cm = torch.zeros(10, 10, dtype=torch.long)
    cm.index_put_((labels.long(), preds.long()), torch.ones(len(labels), dtype=torch.long), accumulate=True)
    loss = float(torch.nn.functional.cross_entropy(torch.from_numpy(logits), labels.long()))
    return {"file": str(path), "model": card.get("model"), **report(cm, loss)}
