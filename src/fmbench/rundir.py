"""The run directory's format: file names, format version, records, and their writers and readers.

Everything that writes or reads a run directory goes through this module: the training loop
(epoch records, checkpoint names), `runs` (config, env, evaluation, summary), shipped weights
(cards, evaluation-only runs), the report (`report.runs.load_run`) and the test fixtures. The
TensorBoard event files under TB (the epoch records again, as scalars; optional) are written by
`engine.tensorboard`, in the directory named here.
docs/design.md describes the same layout; tests/test_rundir.py holds the two together.

Writers are atomic (temp file + rename, `fileio`); readers validate, so a broken or unfinished
run fails with one RunDirError line naming the file instead of a KeyError deep in a plot.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmbench.errors import RunDirError
from fmbench.fileio import LOCK_FILE, read_json, write_bytes, write_json

FORMAT_VERSION = 2                     # 2: config.json records family, tier, device and the test set's hash
CARD_VERSION = 1
V1_MODELS = {"cnn_seed": ("cnn", "study"), "vit_seed": ("vit", "study"),      # version 1's models: (family, tier)
             "cnn_best": ("cnn", "strong"), "vit_best": ("vit", "strong")}

CONFIG = "config.json"                 # what defines the run (config_record)
ENV = "env.json"                       # where and how it ran (runtime.capture_env)
METRICS = "metrics.jsonl"              # one epoch_record per line
BEST = "best.safetensors"              # weights of the best epoch by the monitored metric
LAST = "last.safetensors"              # weights after the last finished epoch
STATE = "last.state.pt"                # optimizer/scheduler/stopper/RNG state (weights_only=True)
EVAL = "eval.json"                     # eval_record
OUTPUTS = "test_outputs.safetensors"   # "probs" (N, C) float32, "labels" (N,) int64
EXPLAIN = "explain.json"               # where the model looks: method, faithfulness figures
MAPS = "explain.safetensors"           # "sample_maps" (6, 28, 28), "class_means" (C, 28, 28) float32 in [0, 1]
SUMMARY = "summary.json"               # Summary, written last: its presence marks a complete run
TB = "tb"                              # TensorBoard event files (engine/tensorboard.py), when tensorboardX is installed
LOCK = LOCK_FILE                       # the writer lock (fileio.writer_lock)
FILES = (CONFIG, ENV, METRICS, BEST, LAST, STATE, EVAL, OUTPUTS, EXPLAIN, MAPS, SUMMARY, TB)
N_SAMPLES = 6                          # the report's sample images, as many as the study showed
SAMPLE_SEED = 0

CONFIG_KEYS = ("format_version", "fmbench_version", "model", "family", "tier", "preset", "overrides",
               "model_config", "train_config", "config_hash", "device", "data")
DATA_KEYS = ("name", "key", "test_hash", "classes")   # config.json's "data": Dataset.identity
EPOCH_KEYS = ("epoch", "train_loss", "train_accuracy", "train_f1", "val_loss", "val_accuracy", "val_f1",
              "lr", "epoch_time_s", "images_per_s")
SPLIT_KEYS = ("loss", "accuracy", "f1_weighted", "n", "per_class", "confusion_matrix")
CLASS_KEYS = ("class", "precision", "recall", "f1", "support")
EXPLAIN_KEYS = ("method", "model", "sample_indices", "class_means_n", "deletion", "randomisation", "seconds")
CARD_KEYS = ("card_version", "name", "model", "sha256", "dtype", "bytes", "config", "command", "seed",
             "epochs", "best_epoch", "train_time_s", "params", "flops_per_image", "machine", "test_hash",
             "run_test", "curve", "test")


def _need(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise RunDirError(f"{path}: {what}")


# config.json ------------------------------------------------------------------------------------

def config_record(*, fmbench_version: str, model: str, family: str, tier: str, preset: str,
                  overrides: dict[str, Any], model_config: dict[str, Any], train_config: dict[str, Any],
                  config_hash: str, device: str | None, data: dict[str, Any] | None) -> dict[str, Any]:
    """config.json's content: what defines the run. `device` is the device type ("cpu", "cuda",
    "mps"), `data` the data set's identity (DATA_KEYS); both None in a weights card, which is
    bound to neither."""
    return {"format_version": FORMAT_VERSION, "fmbench_version": fmbench_version, "model": model,
            "family": family, "tier": tier, "preset": preset, "overrides": overrides,
            "model_config": model_config, "train_config": train_config, "config_hash": config_hash,
            "device": device, "data": data}


def read_config(run_dir: Path) -> dict[str, Any]:
    """config.json of an existing run directory in this fmbench's format (older ones upgraded)."""
    run_dir = Path(run_dir)
    _need(run_dir.is_dir(), run_dir, "run directory does not exist")
    path = run_dir / CONFIG
    raw = read_json(path)
    _need(isinstance(raw, dict), path, "not a JSON object")
    version = raw.get("format_version")
    _need(version in (1, FORMAT_VERSION), path,
          f"format version {version!r}, this fmbench reads versions 1 and {FORMAT_VERSION}")
    return upgrade_config(raw, run_dir) if version == 1 else raw


def upgrade_config(raw: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A version-1 config.json in version 2's form (the one place that knows version 1): family and
    tier as version 1's four models had them, the device type from env.json, the test set's hash from
    summary.json (a v1 run bound to no data set stays unbound). Nothing is written back."""
    _need(raw.get("model") in V1_MODELS, Path(run_dir) / CONFIG, f"model {raw.get('model')!r} is no version-1 model")
    family, tier = V1_MODELS[raw["model"]]
    env = read_env(run_dir) if (Path(run_dir) / ENV).exists() else {}
    device = str(env.get("device") or "").split(" ")[0].split(":")[0] or None   # "cuda:0 (NVIDIA ...)" -> cuda
    data = raw.get("data")
    if data is not None:
        summary = read_json(Path(run_dir) / SUMMARY) if (Path(run_dir) / SUMMARY).exists() else {}
        data = {"name": data.get("name"), "key": data.get("key"), "test_hash": summary.get("test_hash"),
                "classes": data.get("classes")}
    return {**raw, "format_version": FORMAT_VERSION, "family": family, "tier": tier,
            "device": device, "data": data}


def write_config(run_dir: Path, record: dict[str, Any]) -> None:
    write_json(Path(run_dir) / CONFIG, record)


def write_env(run_dir: Path, env: dict[str, Any]) -> None:
    write_json(Path(run_dir) / ENV, env)


def read_env(run_dir: Path) -> dict[str, Any]:
    env = read_json(Path(run_dir) / ENV)
    return env if isinstance(env, dict) else {}


# metrics.jsonl ----------------------------------------------------------------------------------

def epoch_record(epoch: int, train: dict[str, float], val: dict[str, Any], lr: float, seconds: float,
                 images_per_s: float) -> dict[str, Any]:
    """One line of metrics.jsonl: running train metrics (loss/accuracy/f1) and clean validation
    metrics (an eval split record) after `epoch` (1-based)."""
    return {"epoch": epoch, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
            "train_f1": train["f1"], "val_loss": val["loss"], "val_accuracy": val["accuracy"],
            "val_f1": val["f1_weighted"], "lr": lr, "epoch_time_s": round(seconds, 3),
            "images_per_s": round(images_per_s, 1)}


def append_epoch(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one epoch record (a line is small: appending cannot leave half a record behind a
    finished one, and `keep_epochs` trims anything after the last checkpoint on resume)."""
    with open(Path(run_dir) / METRICS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def write_epochs(run_dir: Path, records: list[dict[str, Any]]) -> None:
    write_bytes(Path(run_dir) / METRICS, "".join(json.dumps(r) + "\n" for r in records).encode())


def keep_epochs(run_dir: Path, n: int) -> None:
    """Keep the first `n` records (a resumed run rewrites what came after its checkpoint)."""
    if (Path(run_dir) / METRICS).exists():
        write_epochs(run_dir, read_epochs(run_dir, check=False)[:n])


def read_epochs(run_dir: Path, required: bool = False, check: bool = True) -> list[dict[str, Any]]:
    """metrics.jsonl as a list of records ([] when absent and not `required`)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        _need(not required, path, "file is missing")
        return []
    epochs = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise RunDirError(f"{path}: line {i} is not valid JSON ({e})") from None
        missing = [k for k in EPOCH_KEYS[:7] if k not in row] if check else []
        _need(not missing, path, f"line {i} lacks {', '.join(missing)}")
        epochs.append(row)
    return epochs


# eval.json and test_outputs.safetensors ---------------------------------------------------------

def write_eval(run_dir: Path, best_epoch: int | None, splits: dict[str, dict[str, Any]]) -> None:
    """eval.json: the best epoch and one `engine.metrics.report` record per evaluated split."""
    write_json(Path(run_dir) / EVAL, {"best_epoch": best_epoch, "splits": splits})


def read_eval(run_dir: Path, n_classes: int | None = None, test: bool = True) -> dict[str, Any]:
    """eval.json, every split checked for its fields and `n_classes` (default: the first split's);
    `test` False accepts a run finished without the test set (a search's trial)."""
    path = Path(run_dir) / EVAL
    ev = read_json(path)
    _need(isinstance(ev, dict) and isinstance(ev.get("splits"), dict) and ev["splits"], path, "no 'splits' object")
    _need(not test or isinstance(ev["splits"].get("test"), dict), path, "no 'test' split")
    if n_classes is None:
        n_classes = len(next(iter(ev["splits"].values())).get("per_class") or ())
    for name, sp in ev["splits"].items():
        missing = [k for k in SPLIT_KEYS if k not in sp]
        _need(not missing, path, f"split {name!r} lacks {', '.join(missing)}")
        cm = np.asarray(sp["confusion_matrix"])
        _need(cm.shape == (n_classes, n_classes), path,
              f"split {name!r}: confusion_matrix is {cm.shape}, expected {n_classes}x{n_classes}")
        _need(len(sp["per_class"]) == n_classes, path,
              f"split {name!r}: per_class has {len(sp['per_class'])} rows, expected {n_classes}")
    return ev


def write_outputs(run_dir: Path, probs, labels) -> None:
    """test_outputs.safetensors from (N, C) probabilities and (N,) labels (torch tensors)."""
    from safetensors.torch import save

    tensors = {"probs": probs.float().cpu().contiguous(), "labels": labels.long().cpu().contiguous()}
    write_bytes(Path(run_dir) / OUTPUTS, save(tensors))


def read_outputs(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(probs (N, C) float32, labels (N,) int64), checked for shape and finiteness."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(run_dir) / OUTPUTS
    _need(path.exists(), path, "file is missing")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise RunDirError(f"{path}: not a readable safetensors file ({e})") from None
    _need("probs" in tensors and "labels" in tensors, path, "needs tensors 'probs' and 'labels'")
    probs, labels = tensors["probs"].astype(np.float32), tensors["labels"].astype(np.int64)
    _need(probs.ndim == 2 and labels.shape == (probs.shape[0],), path,
          f"probs {probs.shape} and labels {labels.shape} do not match")
    _need(bool(np.isfinite(probs).all()), path, "probs contain NaN or infinity")
    return probs, labels


def sample_indices(n: int, k: int = N_SAMPLES, seed: int = SAMPLE_SEED) -> list[int]:
    """The report's sample test images: a fixed, seeded choice of `k` of `n` (sorted), the same for every model."""
    return sorted(np.random.default_rng(seed).choice(n, size=min(k, n), replace=False).tolist())


# explain.json and explain.safetensors -----------------------------------------------------------

def write_explanation(run_dir: Path, record: dict[str, Any], maps: dict[str, Any]) -> None:
    """The maps first, then explain.json: a run has an explanation once explain.json exists."""
    from safetensors.torch import save

    missing = [k for k in EXPLAIN_KEYS if k not in record]
    if missing:
        raise ValueError(f"explanation record lacks {', '.join(missing)}")
    write_bytes(Path(run_dir) / MAPS, save({k: v.float().cpu().contiguous() for k, v in maps.items()}))
    write_json(Path(run_dir) / EXPLAIN, record)


def read_explanation(run_dir: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """(explain.json, {"sample_maps", "class_means"}) or None when the run has no explanation."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(run_dir) / EXPLAIN
    if not path.exists():
        return None
    record = read_json(path)
    missing = [k for k in EXPLAIN_KEYS if k not in record] if isinstance(record, dict) else ["everything"]
    _need(not missing, path, f"lacks {', '.join(missing)}")
    try:
        maps = load_file(str(Path(run_dir) / MAPS))
    except (SafetensorError, OSError, ValueError) as e:
        raise RunDirError(f"{Path(run_dir) / MAPS}: not a readable safetensors file ({e})") from None
    _need({"sample_maps", "class_means"} <= set(maps), Path(run_dir) / MAPS,
          "needs tensors 'sample_maps' and 'class_means'")
    return record, maps


# summary.json -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Summary:
    """summary.json: what the run cost and scored. Written last; a run without it is unfinished."""

    model: str
    preset: str
    config_hash: str
    params: int
    flops_per_image: float
    train_time_s: float | None             # None: shipped weights whose card does not say
    epochs_run: int | None
    best_epoch: int | None
    stopped_early: bool
    train_images_per_s: float | None       # mean over epochs; None when evaluated only
    infer_images_per_s: float              # engine.speed.measure_inference
    latency_ms: float
    device: str
    precision: str
    test_hash: str                         # Dataset.test_hash of the test set evaluated
    test_accuracy: float | None            # None: finished without a test evaluation (a search's trial)
    test_f1_weighted: float | None
    pretrained: bool = False               # shipped weights evaluated, not trained here
    monitor: str | None = None             # early stopping's metric and its best value
    best_value: float | None = None
    weights_sha256: str | None = None      # pretrained: the shipped file's SHA-256
    card_test_accuracy: float | None = None  # pretrained: the accuracy its card records
    cut_short: bool = False                # stopped by its caller before its epochs ran out (a pruned trial)
    status: str = "complete"


def write_summary(run_dir: Path, summary: Summary) -> None:
    write_json(Path(run_dir) / SUMMARY, asdict(summary))


def read_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json of a complete run (as a dict: older runs may lack fields added since)."""
    path = Path(run_dir) / SUMMARY
    _need(path.exists(), path, "file is missing (the run is unfinished or crashed)")
    summary = read_json(path)
    _need(isinstance(summary, dict), path, "not a JSON object")
    _need(summary.get("status") == "complete", path,
          f"status is {summary.get('status')!r}, not 'complete' (the run is unfinished)")
    _need("test_hash" in summary and "model" in summary, path, "lacks 'model' or 'test_hash'")
    return summary


def is_complete(run_dir: Path) -> bool:
    try:
        read_summary(run_dir)
        return True
    except RunDirError:
        return False


def mark_unfinished(run_dir: Path) -> None:
    """Remove summary.json before rewriting a run: it is complete again only once rewritten."""
    (Path(run_dir) / SUMMARY).unlink(missing_ok=True)


# shipped weights' cards (NAME.json beside NAME.safetensors) -----------------------------------

def card_record(**values: Any) -> dict[str, Any]:
    """A weights card with exactly CARD_KEYS (plus any extra fields the shipper adds after them)."""
    missing = [k for k in CARD_KEYS if k not in values and k != "card_version"]
    if missing:
        raise ValueError(f"card lacks {', '.join(missing)}")
    card = {"card_version": CARD_VERSION, **{k: values.pop(k) for k in CARD_KEYS[1:]}}
    return {**card, **values}


def read_card(path: Path) -> dict[str, Any]:
    """A card, checked for the fields loading needs (its SHA-256 and config)."""
    card = read_json(path)
    _need(isinstance(card, dict), path, "not a JSON object")
    _need(isinstance(card.get("sha256"), str), path, "no 'sha256' of the weights file")
    _need(isinstance(card.get("config"), dict), path, "missing or invalid field 'config'")
    return card
