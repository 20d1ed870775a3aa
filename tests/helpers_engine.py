"""Helpers for the model, engine, config, CLI-train and predict tests.

- `tiny_dataset()`: a Fashion-MNIST-shaped `Dataset` of random images held in memory (no files,
  no cache), every class present, for tests that call the library directly.
- `FAST`: overrides that make a training run take about a second on a busy 2-core CPU.
- `train_tiny(run_dir, ...)`: train a registered model on `tiny_dataset()` through `runs.execute`.
- `stub_speed(monkeypatch)`: replace the inference benchmark that `finish` runs (several seconds
  per run on a 2-core CPU) with a constant; `engine.speed.measure_inference` has its own test.
- `interrupt_in_epoch(monkeypatch, epoch)`: raise KeyboardInterrupt after the first optimizer step
  of `epoch` (1-based), as a Ctrl-C in the middle of that epoch would.
- readers for run directories: `metrics()`, `weights()`, `RUN_FILES`.
- `one_thread`: an autouse fixture (import it into a test module) that runs each test with one
  PyTorch thread and restores the count afterwards. On the shared 2-core machine, two threads per
  process under load made a tiny run 10-30x slower (1.6 s -> 42 s for vit_seed); one thread also
  keeps bit-exact comparisons independent of the machine's core count.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from fmbench import CLASSES
from fmbench import rundir as R
from fmbench.data import Dataset

# Every file of the run-directory format (fmbench.rundir; tests/test_rundir.py holds design.md to it);
# the TensorBoard folder only where tensorboardX is installed to write it.
RUN_FILES = tuple(n for n in (*R.FILES, R.LOCK) if n != R.TB or importlib.util.find_spec("tensorboardX"))
METRIC_KEYS = set(R.EPOCH_KEYS)
TIMING_KEYS = ("epoch_time_s", "images_per_s")  # wall-clock: the only fields allowed to differ between runs

# 40 train images with val_fraction 0.25 -> 30 train (4 steps of 8) and 10 val (one per class).
FAST: dict[str, Any] = {"epochs": 2, "batch_size": 8, "val_fraction": 0.25, "precision": "fp32",
                        "eval_batch_size": 64, "threads": 1}
# The thread count a fresh process gets (helpers are imported before any test runs).
DEFAULT_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_dataset(n_train: int = 40, n_test: int = 20, seed: int = 0) -> Dataset:
    """Random uint8 images (N, 28, 28), balanced labels in a random order, as a `Dataset`."""
    g = torch.Generator().manual_seed(seed)

    def part(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = (torch.arange(n) % len(CLASSES))[torch.randperm(n, generator=g)]
        return torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8), labels

    train_x, train_y = part(n_train)
    test_x, test_y = part(n_test)
    sha = {stem: f"{i + seed:064x}" for i, stem in enumerate((
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))}
    return Dataset(train_x, train_y, test_x, test_y, classes=CLASSES, source="synthetic (tests)", sha256=sha)


def stub_speed(mp: pytest.MonkeyPatch) -> None:
    """Skip the inference benchmark in `runs._finish` (it has its own test)."""
    mp.setattr("fmbench.runs.measure_inference",
               lambda *a, **k: {"infer_images_per_s": 1.0, "latency_ms": 1.0})


def tiny_preset(model: str) -> str | None:
    """The model's smoke-test preset if it has one (short warmup), else its default preset."""
    from fmbench.models import get_spec

    return "smoke" if "smoke" in get_spec(model).presets else None


def train_tiny(run_dir: Path, model: str = "cnn_seed", data: Dataset | None = None, **overrides: Any) -> Path:
    """Train `model` (`tiny_preset` + FAST + overrides) on tiny data in `run_dir` on the CPU."""
    from fmbench import runs
    from fmbench.spec import make_spec

    spec = make_spec(model, tiny_preset(model), {**FAST, **overrides})
    return runs.execute(spec, run_dir, data if data is not None else tiny_dataset(), "cpu")


def interrupt_in_epoch(mp: pytest.MonkeyPatch, epoch: int) -> None:
    """Make `fit` raise KeyboardInterrupt right after the first optimizer step of `epoch` (1-based)."""
    from fmbench.engine import loop

    real = loop.train_one_epoch
    calls = {"n": 0}

    def train_one_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == epoch:
            args = list(args)
            on_step = args[9] if len(args) > 9 else kwargs.get("on_step")

            def stepping(step: int, loss: torch.Tensor) -> None:
                if on_step is not None:
                    on_step(step, loss)
                raise KeyboardInterrupt  # the weights have moved on since the last checkpoint

            if len(args) > 9:
                args[9] = stepping
            else:
                kwargs["on_step"] = stepping
        return real(*args, **kwargs)

    mp.setattr(loop, "train_one_epoch", train_one_epoch)


def metrics(run_dir: Path, drop_timing: bool = False) -> list[dict]:
    """The records of RUN_DIR/metrics.jsonl (optionally without the wall-clock fields)."""
    rows = [json.loads(ln) for ln in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    if drop_timing:
        rows = [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]
    return rows


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Bit-identical state dicts (same keys, dtypes, shapes and values)."""
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
