"""The public Python API: what a notebook needs, re-exported as `fmbench.<name>` (docs/api.md).

    fmbench.list_models()                          registered model names
    fmbench.create_model(name, pretrained=False, **config)   an nn.Module: float (N, 1, 28, 28) in [0, 1] -> logits
    fmbench.load_data(data_dir=None, ...)          the data set (uint8 tensors, class names), found and verified
    fmbench.train(name, preset=None, out=None, data=None, recipe=None, **overrides)   -> Run
    fmbench.load_run(path)                         -> Run of a finished run directory
    fmbench.resume(path, data=None)                -> Run: an interrupted run continued
    fmbench.evaluate(model_or_run, data=None, split="test")   -> metrics dict
    fmbench.predict(model_or_run, images)          -> one dict per image: class, probability, top 3
    fmbench.compare(runs, out)                     -> path of the report.html
    fmbench.explain_images(model_or_run, images)   -> one dict per image: class, probability, saliency map
    fmbench.explain_run(run)                       -> a run's recorded explanation (written into its directory)
    fmbench.export_onnx(model_or_run, path)        -> the card of the ONNX file written, checked with ONNX Runtime
    fmbench.run_study(models=None, preset=None, seeds=1, out="fmbench-study")   -> report.html (`fmbench run`)
    fmbench.study_data_size(models, sizes, seeds=2)    -> report.html (`fmbench study data-size`)
    fmbench.study_robustness(run_dirs, weights)    -> report.html (`fmbench study robustness`)
    fmbench.study_equal_budget(models, budget="20m", seeds=3)  -> report.html (`fmbench study equal-budget`)
    fmbench.tune(name, trials=N | budget="20m", out="fmbench-tune")   -> Tuned: best.json's recipe (`fmbench tune`)

(`explain_images` and `export_onnx`, not `explain` and `export`: those name fmbench's subpackage and module.)

Errors are the typed exceptions the CLI turns into exit 2 (`fmbench.errors`: ConfigError for a bad
name or setting, DataError for missing or corrupt data, RunDirError for a bad run directory);
never SystemExit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from fmbench import logs
from fmbench import rundir as R
from fmbench.errors import ConfigError


def list_models() -> list[str]:
    """Names of the registered models, e.g. ['cnn_seed', 'vit_seed', 'cnn_best', 'vit_best']."""
    from fmbench.models import REGISTRY

    return list(REGISTRY)


def create_model(name: str, pretrained: bool | str | Path = False, **config: Any) -> nn.Module:
    """A registered model. `pretrained=True`: the shipped weights, SHA-256-checked against their
    card, in eval mode (a path: that .safetensors file with its card); the model's `.run_config`
    then holds the recipe they were trained with. Otherwise fresh weights, with `config`
    overriding the model's default sizes (e.g. depth=4)."""
    from fmbench.models import build_model, get_spec

    spec = get_spec(name)
    if pretrained is not False:
        if config:
            raise ConfigError(f"create_model({name!r}, pretrained=...) takes no config overrides "
                              f"(the shipped weights fix them): {', '.join(config)}")
        from fmbench.export import shipped_source
        from fmbench.weights import load_shipped

        ref = name if pretrained is True else pretrained
        model, rc = load_shipped(ref, "cpu")
        if rc.model != name:
            raise ConfigError(f"{pretrained}: these are weights for {rc.model}, not {name}")
        model.run_config = rc
        model.source = shipped_source(ref)     # where the weights came from, for export_onnx's card
        return model
    from fmbench.config import apply_overrides

    return build_model(name, apply_overrides(spec.config_cls(), config))


def load_data(data_dir: str | Path | None = None, *, download: bool = True, verify: bool = True,
              mirrors: list[str] | None = None, cache_dir: str | Path | None = None, quiet: bool = True):
    """Fashion-MNIST (or an IDX directory): `.train_images` (60000, 28, 28) uint8, `.train_labels`,
    `.test_images`, `.test_labels`, `.classes`; found, downloaded (from `mirrors`, default the
    public ones) and verified as the CLI does. `quiet=False` reports progress on stderr."""
    from fmbench.data import load_fashion_mnist

    with logs.quiet(quiet):
        return load_fashion_mnist(data_dir, mirrors=mirrors, download=download, verify=verify, cache_dir=cache_dir)


@dataclass(frozen=True)
class Run:
    """A finished run directory: its config, per-epoch history, evaluation and summary."""

    path: Path
    config: Any                      # spec.RunSpec
    history: list[dict[str, Any]]    # metrics.jsonl: one record per epoch
    evaluation: dict[str, Any]       # eval.json's splits: {"train"|"val"|"test": metrics}
    summary: dict[str, Any]          # summary.json

    @property
    def test_accuracy(self) -> float:
        return float(self.summary["test_accuracy"])

    def model(self, which: str | None = None) -> nn.Module:
        """The run's model in eval mode: the weights its recipe keeps (its best epoch's, or its last
        epoch's with `restore_best=False`), or `which` "best" / "last"."""
        from fmbench.runs import load_model

        model, rc = load_model(self.path, "cpu", which)
        model.run_config = rc        # evaluate/predict use the run's settings and class names
        return model

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}, model={self.config.model!r}, preset={self.config.preset!r}, "
                f"epochs={len(self.history)}, test_accuracy={self.test_accuracy:.4f})")


def load_run(path: str | Path) -> Run:
    """A finished run directory as a `Run` (RunDirError when it is unfinished or broken)."""
    from fmbench.spec import read_spec

    path = Path(path)
    summary = R.read_summary(path)
    return Run(path, read_spec(path), R.read_epochs(path), R.read_eval(path)["splits"], summary)


def train(name: str, preset: str | None = None, out: str | Path | None = None, data=None, device: str = "auto",
          quiet: bool = False, explain: bool = True, recipe: str | Path | None = None, **overrides: Any) -> Run:
    """Train a registered model (its default preset unless named; `overrides` as `--set`, e.g.
    epochs=3) into `out` (default: runs/NAME-PRESET-seedS-HASH), on `data` (default: load_data()).
    `recipe`: a search's best.json (`fmbench tune`), its preset and settings, `overrides` on top.
    An `out` that holds this run finished is reused, interrupted is resumed; another run there is
    a ConfigError. Runtime settings (threads, eval_batch_size, compile, channels_last) are not
    part of a run's identity: a run trained with threads=2 is reused by threads=1.
    `explain=False` skips recording where the model looks (faster for quick experiments)."""
    from fmbench import runs
    from fmbench.spec import make_spec
    from fmbench.tuning.recipe import apply_recipe, as_text

    spec = make_spec(name, *apply_recipe(recipe, name, preset, {k: as_text(v) for k, v in overrides.items()}))
    data = data if data is not None else load_data()
    spec = spec.on(data, device)
    run_dir = Path(out) if out is not None else runs.run_dir_for(spec)
    with logs.quiet(quiet):
        runs.execute(spec, run_dir, data, device, explain=explain)
    return load_run(run_dir)


def resume(path: str | Path, data=None, device: str = "auto", quiet: bool = False) -> Run:
    """Continue an interrupted run from its last checkpoint, with the config it recorded (the
    data must be the same data set: RunDirError otherwise); a finished run is returned as it is."""
    from fmbench import runs
    from fmbench.spec import read_spec

    path = Path(path)
    read_spec(path)                            # a missing or broken run directory fails before the data loads
    data = data if data is not None else load_data()
    with logs.quiet(quiet):
        runs.resume(path, data, device)
    return load_run(path)


def _loaded(model_or_run: nn.Module | Run | str | Path, device: str | None) -> tuple[nn.Module, Any]:
    """(model in eval mode, its RunSpec or None). A module given stays where it is unless
    `device` is named (then it is moved, as `nn.Module.to` does); a run is loaded onto `device`
    (default: auto) with its run's settings (channels_last for a CNN)."""
    from fmbench.runtime import choose_device

    if isinstance(model_or_run, nn.Module):
        model = model_or_run if device is None else model_or_run.to(choose_device(device))
        return model.eval(), getattr(model_or_run, "run_config", None)
    from fmbench.runs import load_model

    path = model_or_run.path if isinstance(model_or_run, Run) else Path(model_or_run)
    model, rc = load_model(path, choose_device(device or "auto"))
    if rc.train_cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, rc


def _precision(precision: str | None, rc: Any, model: nn.Module) -> str:
    """The precision asked for, else the run's own setting ('auto': bf16 where it is fast), else fp32."""
    from fmbench.runtime import choose_precision

    return choose_precision(precision or (rc.train_cfg.precision if rc is not None else "fp32"),
                            next(model.parameters()).device)


def _as_uint8(images: Any) -> torch.Tensor:
    """Paths, a uint8 (N, 28, 28) tensor/array or a float (N, 1, 28, 28) tensor in [0, 1] -> uint8 (N, 28, 28)."""
    if isinstance(images, (str, Path)) or (isinstance(images, Sequence) and images and isinstance(images[0], (str, Path))):
        from fmbench.imagefiles import load_images

        return load_images([images] if isinstance(images, (str, Path)) else list(images))
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8 and x.ndim == 3 and x.shape[1:] == (28, 28):
        return x
    if x.is_floating_point() and x.ndim == 4 and x.shape[1:] == (1, 28, 28):
        return (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8)
    raise ConfigError(f"images must be file paths, uint8 (N, 28, 28) or float (N, 1, 28, 28) in [0, 1]; "
                      f"got {x.dtype} {tuple(x.shape)}")


def _classes(rc: Any) -> tuple[str, ...]:
    """The class names a run recorded (its data set's), else Fashion-MNIST's."""
    from fmbench import CLASSES

    return tuple(((rc.data or {}).get("classes") if rc is not None else None) or CLASSES)


def evaluate(model_or_run: nn.Module | Run | str | Path, data=None, split: str = "test", *,
             device: str | None = None, precision: str | None = None) -> dict[str, Any]:
    """Loss, accuracy, weighted F1, per-class report (with class names) and confusion matrix on the
    test set, or on split="train"/"val" of a run's own validation split (a run, a run directory,
    or a model that knows its run: `create_model(..., pretrained=True)`, `Run.model()`).
    `precision`: fp32, bf16 or auto; default: the run's own setting, fp32 for a bare module."""
    from fmbench.config import TrainConfig
    from fmbench.data.batches import make_splits
    from fmbench.engine.loop import evaluate as run_eval

    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be train, val or test, got {split!r}")
    model, rc = _loaded(model_or_run, device)
    if split != "test" and rc is None:
        raise ConfigError(f"split={split!r} needs a run (its validation split); a bare model gets split='test'")
    data = data if data is not None else load_data()
    cfg = rc.train_cfg if rc is not None else TrainConfig()
    splits = make_splits(data, cfg, next(model.parameters()).device)
    x, y = splits.of(split)
    metrics, _ = run_eval(model, x, y, cfg, _precision(precision, rc, model))
    for row, cls in zip(metrics["per_class"], data.classes):
        row["class"] = cls
    return metrics


def predict(model_or_run: nn.Module | Run | str | Path, images: Any, top: int = 3, *,
            device: str | None = None, precision: str | None = None) -> list[dict[str, Any]]:
    """One dict per image: {"class", "index", "probability", "top": [{"class", "index", "probability"}, ...]}.
    Image files are read (and checked) before any model is loaded."""
    from fmbench import CLASSES
    from fmbench.engine.loop import predict_logits

    if not 1 <= top <= len(CLASSES):
        raise ConfigError(f"top must be between 1 and {len(CLASSES)}, got {top}")
    x = _as_uint8(images)
    model, rc = _loaded(model_or_run, device)
    classes = _classes(rc)
    probs = predict_logits(model, x.to(next(model.parameters()).device), 256,
                           _precision(precision, rc, model)).softmax(1).cpu()
    values, idx = probs.topk(top, dim=1)
    out = []
    for v, i in zip(values.tolist(), idx.tolist()):
        ranked = [{"class": classes[c], "index": c, "probability": p} for p, c in zip(v, i)]
        out.append({**ranked[0], "top": ranked})
    return out


def compare(runs: Sequence[Run | str | Path], out: str | Path = "report", test_images: Any = None, *,
            images: bool = True, data_dir: str | Path | None = None, download: bool = True, command: str = "") -> Path:
    """The comparison report (report.md, report.html, figures/) of finished runs; returns report.html.

    `runs` are Runs or run directories; a study directory (`fmbench study ...`) adds its section.
    The example-image figures use `test_images` when given, else (with `images`) the data set found
    as load_data() finds it (`data_dir`, `download`); without images they are replaced by a note.
    `command` is quoted in the report's provenance."""
    from fmbench.report import build_report

    dirs = [r.path if isinstance(r, Run) else Path(r) for r in runs]
    return build_report(dirs, Path(out), test_images=test_images, find_images=images, data_dir=data_dir,
                        download=download, command=command)


# ------------------------------------------------------------------ where a model looks, and its export

def _identity(model: nn.Module, rc: Any) -> tuple[str, Any]:
    """(registered name, model config) of a loaded model: its run's, else what its class says."""
    if rc is not None:
        return rc.model, rc.model_cfg
    from fmbench.models import registered_name

    return registered_name(model), model.cfg


def explain_images(model_or_run: nn.Module | Run | str | Path, images: Any, *, method: str | None = None,
                   faithfulness: bool = False, data=None, device: str | None = None,
                   precision: str | None = None) -> list[dict[str, Any]]:
    """One dict per image (paths or tensors, as `predict` takes): {"class", "index", "probability", "model",
    "method", "saliency": (28, 28) tensor in [0, 1]}, plus "heads" (heads, 28, 28) for method="attention".
    `method`: gradcam (CNNs), rollout or attention (ViTs); default: gradcam or rollout. `faithfulness=True`
    adds "faithfulness": {"deletion", "randomisation"} measured on the test set of `data` (default: load_data())."""
    from fmbench.explain.images import explain

    x = _as_uint8(images)
    model, rc = _loaded(model_or_run, device)
    name, model_cfg = _identity(model, rc)
    test_set = None
    if faithfulness:
        data = data if data is not None else load_data()
        test_set = (data.test_images, data.test_labels)
    return explain(model, name, model_cfg, x, method, _precision(precision, rc, model), _classes(rc), test_set)


def explain_run(run: Run | str | Path, data=None, *, device: str = "auto", quiet: bool = False) -> dict[str, Any]:
    """Record where a finished run's model looks into its directory (explain.json, explain.safetensors:
    what `train(explain=True)` writes and the report shows), on `data` (default: load_data()); returns
    the record with its maps "sample_maps" (6, 28, 28) and "class_means" (10, 28, 28) as tensors."""
    from fmbench.runs import explain_existing

    path = run.path if isinstance(run, Run) else Path(run)
    data = data if data is not None else load_data()
    with logs.quiet(quiet):
        explain_existing(path, data, device)
    record, maps = R.read_explanation(path)
    return {**record, **{k: torch.from_numpy(v) for k, v in maps.items()}}


def export_onnx(model_or_run: nn.Module | Run | str | Path, path: str | Path, *, opset: int = 17,
                data=None) -> dict[str, Any]:
    """Write the model as ONNX to `path` (dynamic batch, float (N, 1, 28, 28) in [0, 1] -> logits) with its
    card `path`.json, after checking it with ONNX Runtime against PyTorch on 1,000 test images of `data`
    (default: load_data()); returns the card. Its "source" names the run directory or shipped weights
    and their SHA-256 (a module from `create_model(pretrained=...)` knows its weights)."""
    from fmbench import export as onnx

    onnx.check_target(Path(path), opset)
    model, rc = _loaded(model_or_run, "cpu")
    name, _ = _identity(model, rc)
    if isinstance(model_or_run, nn.Module):
        source = getattr(model_or_run, "source", None) or {"model": name, "config_hash": rc.hash if rc else None}
    else:
        source = onnx.run_source(model_or_run.path if isinstance(model_or_run, Run) else Path(model_or_run), rc)
    data = data if data is not None else load_data()
    return onnx.export_onnx(model.to(memory_format=torch.contiguous_format), name, source, Path(path),
                            data.test_images, opset)


from fmbench.api.studies import run_study, study_data_size, study_equal_budget, study_robustness  # noqa: E402
from fmbench.api.tuning import Tuned, tune  # noqa: E402

__all__ = ["run_study", "study_data_size", "study_equal_budget", "study_robustness", "tune", "Tuned", "list_models", "create_model", "load_data", "Run", "train", "load_run", "resume", "evaluate", "predict",
           "compare", "explain_images", "explain_run", "export_onnx"]
