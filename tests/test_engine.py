"""The training engine: early stopping, checkpoints, divergence, resume and determinism.

Runs train on `helpers_engine.tiny_dataset()` (40 random images, 30 train / 10 val, batches of 8,
fp32) so a run takes about a second; whole-run comparisons are bit-exact on the CPU.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)
from helpers_engine import (DEFAULT_THREADS, FAST, METRIC_KEYS, interrupt_in_epoch, metrics, read_json,
                            same_tensors, stub_speed, tiny_dataset, train_tiny, weights)

from fmbench import runs
from fmbench.rundir import is_complete
from fmbench.config import TrainConfig, apply_overrides
from fmbench.data.batches import make_splits
from fmbench.engine.checkpoint import load_state, load_weights, save_state, save_weights
from fmbench.engine.loop import evaluate, fit
from fmbench.engine.optim import lr_factor, make_optimizer, make_scheduler
from fmbench.engine.speed import matmul_gflops, measure_inference
from fmbench.engine.stopping import EarlyStopping
from fmbench.errors import RunDirError, TrainingDiverged
from fmbench.models import REGISTRY, build_model

MODELS = list(REGISTRY)
CPU = torch.device("cpu")


def _fit_setup(tmp_path: Path, model: str = "cnn_seed", **overrides):
    """(model, splits, cfg, run_dir) for calling `fit` directly on the tiny data."""
    cfg = apply_overrides(TrainConfig(), {**FAST, "channels_last": False, **overrides})
    torch.manual_seed(cfg.seed)
    net = build_model(model)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return net, make_splits(tiny_dataset(), cfg, CPU), cfg, run_dir


# ---------------------------------------------------------------- early stopping (unit)

def test_early_stopping_min_mode_counts_epochs_without_improvement():
    s = EarlyStopping("val_loss", patience=2)
    assert s.mode == "min"
    assert s.step(1.0, 1) and s.best == 1.0 and s.best_epoch == 1
    assert not s.step(1.0, 2) and s.wait == 1 and not s.should_stop   # equal is not better
    assert s.step(0.9, 3) and s.wait == 0 and s.best_epoch == 3       # an improvement resets the count
    assert not s.step(0.95, 4) and not s.should_stop
    assert not s.step(2.0, 5) and s.should_stop
    assert s.best == 0.9 and s.best_epoch == 3


@pytest.mark.parametrize("monitor", ["val_accuracy", "val_f1"])
def test_early_stopping_max_mode(monitor):
    s = EarlyStopping(monitor, patience=1)
    assert s.mode == "max"
    assert s.step(0.5, 1)
    assert s.step(0.6, 2) and s.best_epoch == 2
    assert not s.step(0.4, 3) and s.should_stop and s.best == 0.6


def test_early_stopping_min_delta_is_the_smallest_gain_that_counts():
    s = EarlyStopping("val_loss", patience=2, min_delta=0.1)
    s.step(1.0, 1)
    assert not s.step(0.95, 2)          # better, but by less than min_delta
    assert s.step(0.85, 3)              # better by more than 0.1 (than the best, 1.0)
    up = EarlyStopping("val_accuracy", patience=1, min_delta=0.05)
    up.step(0.80, 1)
    assert not up.step(0.84, 2) and up.should_stop
    assert up.best == 0.80


def test_patience_zero_never_stops_but_tracks_the_best():
    s = EarlyStopping("val_loss", patience=0)
    for epoch, value in enumerate([1.0, 2.0, 3.0, 4.0, 5.0], 1):
        s.step(value, epoch)
    assert not s.should_stop and s.best_epoch == 1 and s.wait == 4


def test_early_stopping_state_round_trips():
    s = EarlyStopping("val_accuracy", patience=3, min_delta=0.01)
    s.step(0.5, 1)
    s.step(0.4, 2)
    t = EarlyStopping()
    t.load_state_dict(s.state_dict())
    assert t == s
    fresh = EarlyStopping("val_loss")
    assert math.isnan(fresh.best) and fresh.step(123.0, 1)  # the first value always counts


# ---------------------------------------------------------------- early stopping in fit

@pytest.mark.parametrize("monitor", ["val_loss", "val_accuracy", "val_f1"])
def test_fit_stops_early_and_restores_the_best_weights(tmp_path, monitor, capsys):
    # min_delta 10 cannot be met by any of these metrics: epoch 1 is the best, and with patience 1
    # training stops after epoch 2 of 6.
    net, splits, cfg, run_dir = _fit_setup(tmp_path, epochs=6, patience=1, min_delta=10.0, monitor=monitor)
    result = fit(net, splits, cfg, run_dir, "fp32")
    assert result["stopped_early"] is True
    assert result["epochs_run"] == 2 and result["best_epoch"] == 1 and result["monitor"] == monitor
    assert [r["epoch"] for r in metrics(run_dir)] == [1, 2]
    assert "early stopping after epoch 2" in capsys.readouterr().err
    best, last = weights(run_dir / "best.safetensors"), weights(run_dir / "last.safetensors")
    assert not same_tensors(best, last)
    now = {k: v.contiguous() for k, v in net.state_dict().items()}
    assert same_tensors(now, best), "fit must end with the best epoch's weights (restore_best_weights)"
    assert load_state(run_dir / "last.state.pt")["epoch"] == 2


def test_fit_with_patience_zero_runs_every_epoch(tmp_path):
    net, splits, cfg, run_dir = _fit_setup(tmp_path, epochs=2, patience=0, min_delta=10.0)
    result = fit(net, splits, cfg, run_dir, "fp32")
    assert result["stopped_early"] is False and result["epochs_run"] == 2 and result["best_epoch"] == 1


def test_metrics_records_have_the_documented_fields(tmp_path):
    net, splits, cfg, run_dir = _fit_setup(tmp_path, epochs=2, patience=0)
    fit(net, splits, cfg, run_dir, "fp32")
    rows = metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert set(r) == METRIC_KEYS
        assert all(math.isfinite(r[k]) for k in METRIC_KEYS)
        assert 0 <= r["train_accuracy"] <= 1 and 0 <= r["val_accuracy"] <= 1
        assert r["lr"] == pytest.approx(cfg.lr)


# ---------------------------------------------------------------- divergence

def test_nan_loss_stops_with_a_clear_error_and_leaves_best_intact(tmp_path):
    """The forward pass returns NaN from epoch 2 on: the epoch-1 checkpoints must survive untouched."""
    net, splits, cfg, run_dir = _fit_setup(tmp_path, epochs=3, patience=0)
    steps_per_epoch = math.ceil(len(splits.train_y) / cfg.batch_size)
    seen = {"train_calls": 0}

    def poison(module, inputs, output):
        if not module.training:
            return None  # validation stays clean
        seen["train_calls"] += 1
        if seen["train_calls"] == steps_per_epoch + 1:  # first step of epoch 2: snapshot the files
            seen["best"] = (run_dir / "best.safetensors").read_bytes()
            seen["last"] = (run_dir / "last.safetensors").read_bytes()
        if seen["train_calls"] > steps_per_epoch:
            return output * float("nan")
        return None

    net.register_forward_hook(poison)
    with pytest.raises(TrainingDiverged) as e:
        fit(net, splits, cfg, run_dir, "fp32")
    msg = str(e.value)
    assert "\n" not in msg
    assert "loss became nan at epoch 2, step 1" in msg
    assert f"best weights (epoch 1) are intact in {run_dir / 'best.safetensors'}" in msg
    assert "lower lr" in msg and "grad_clip" in msg
    assert (run_dir / "best.safetensors").read_bytes() == seen["best"]
    assert (run_dir / "last.safetensors").read_bytes() == seen["last"]
    assert [r["epoch"] for r in metrics(run_dir)] == [1]
    assert load_state(run_dir / "last.state.pt")["epoch"] == 1


def test_huge_learning_rate_diverges(tmp_path):
    net, splits, cfg, run_dir = _fit_setup(tmp_path, epochs=2, lr=1e30)
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf|-inf) at epoch 1, step \d+; training stopped"):
        fit(net, splits, cfg, run_dir, "fp32")


def test_divergence_in_the_first_epoch_does_not_promise_a_missing_checkpoint(tmp_path):
    net, splits, cfg, run_dir = _fit_setup(tmp_path, epochs=2, lr=1e30)
    with pytest.raises(TrainingDiverged) as e:
        fit(net, splits, cfg, run_dir, "fp32")
    assert not (run_dir / "best.safetensors").exists()
    assert "best.safetensors" not in str(e.value) and "epoch 0" not in str(e.value)


# ---------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("name", MODELS)
def test_weights_round_trip_to_identical_logits(tmp_path, name):
    torch.manual_seed(0)
    model = build_model(name)
    model.train()
    with torch.no_grad():  # move BatchNorm running statistics away from their initial values
        model(torch.rand(8, 1, 28, 28))
    model.eval()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
    save_weights(model, tmp_path / "w.safetensors")
    torch.manual_seed(1)
    other = build_model(name).eval()
    load_weights(other, tmp_path / "w.safetensors")
    strided = build_model(name).to(memory_format=torch.channels_last).eval()  # as the engine holds it
    load_weights(strided, tmp_path / "w.safetensors")
    with torch.no_grad():
        assert torch.equal(other(x), expected)
        torch.testing.assert_close(strided(x), expected, rtol=1e-4, atol=1e-5)  # other conv kernels
    assert same_tensors(weights(tmp_path / "w.safetensors"),
                        {k: v.contiguous() for k, v in model.state_dict().items()})
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary file left


@pytest.mark.parametrize("content", [b"", b"this is not a safetensors file", b"\xff" * 8 + b"{}", "truncated"],
                         ids=["empty", "text", "bad-header", "truncated"])
def test_corrupt_weights_file_is_a_run_dir_error_naming_the_file(tmp_path, content):
    model = build_model("cnn_seed")
    path = tmp_path / "best.safetensors"
    if content == "truncated":
        save_weights(model, path)
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(RunDirError) as e:
        load_weights(model, path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_mismatched_or_wrong_hash_weights_are_run_dir_errors(tmp_path):
    cnn, vit = build_model("cnn_seed"), build_model("vit_seed")
    path = tmp_path / "w.safetensors"
    with pytest.raises(RunDirError, match="weights file is missing"):
        load_weights(cnn, path)
    save_weights(vit, path)
    with pytest.raises(RunDirError, match="weights do not match the model") as e:
        load_weights(cnn, path)
    assert str(path) in str(e.value)
    save_weights(cnn, path)
    with pytest.raises(RunDirError, match="SHA-256 mismatch"):
        load_weights(cnn, path, expected_sha256="0" * 64)


def test_training_state_round_trips(tmp_path):
    model = build_model("cnn_seed")
    opt = torch.optim.Adam(model.parameters())
    model(torch.rand(4, 1, 28, 28)).sum().backward()
    opt.step()
    state = {"epoch": 3, "train_time_s": 1.5, "optimizer": opt.state_dict(),
             "stopper": EarlyStopping().state_dict(), "rng": {"torch": torch.get_rng_state()}}
    save_state(tmp_path / "s.pt", state)
    back = load_state(tmp_path / "s.pt")
    assert back["epoch"] == 3 and torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])


class _Payload:
    """Unpickling this would call open(marker, 'w'): a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_training_state_is_loaded_with_weights_only(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "last.state.pt"
    torch.save({"epoch": 1, "payload": _Payload(marker)}, path)
    with pytest.raises(RunDirError) as e:
        load_state(path)
    assert str(path) in str(e.value)
    assert not marker.exists(), "load_state unpickled an arbitrary object"


def test_corrupt_or_missing_training_state_is_a_run_dir_error(tmp_path):
    path = tmp_path / "last.state.pt"
    with pytest.raises(RunDirError, match="training state is missing"):
        load_state(path)
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 26)  # a zip header and nothing after it
    with pytest.raises(RunDirError, match="unreadable training state"):
        load_state(path)


# ---------------------------------------------------------------- resume and determinism

def _state_equal(a, b, path="state") -> None:
    """Recursively assert two training states are identical (train_time_s aside)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            if k != "train_time_s":
                _state_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _state_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
    else:
        assert a == b, path


def assert_same_run(a: Path, b: Path) -> None:
    """Two run directories hold bit-identical results (wall-clock fields aside)."""
    assert metrics(a, drop_timing=True) == metrics(b, drop_timing=True)
    for name in ("best.safetensors", "last.safetensors", "test_outputs.safetensors"):
        assert same_tensors(weights(a / name), weights(b / name)), name
    assert read_json(a / "eval.json") == read_json(b / "eval.json")
    _state_equal(load_state(a / "last.state.pt"), load_state(b / "last.state.pt"))
    sa, sb = read_json(a / "summary.json"), read_json(b / "summary.json")
    for key in ("status", "epochs_run", "best_epoch", "stopped_early", "test_accuracy", "test_f1_weighted",
                "params", "flops_per_image", "best_value"):
        assert sa[key] == sb[key], key


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """reference_run(model): an uninterrupted FAST run of `model`, trained once per module."""
    done: dict[str, Path] = {}

    def get(model: str) -> Path:
        if model not in done:
            with pytest.MonkeyPatch.context() as mp:
                stub_speed(mp)
                done[model] = train_tiny(tmp_path_factory.mktemp(f"ref-{model}") / "run", model)
        return done[model]

    return get


# Every registered model, interrupted in epoch 2 (its presets bring their own optimizer, schedule,
# warmup, augmentation and dropout/drop-path RNG use); cnn_seed also in epoch 1, before any checkpoint.
RESUME_CASES = [(m, 2) for m in MODELS] + [("cnn_seed", 1)]


@pytest.mark.parametrize("model, epoch", RESUME_CASES, ids=[f"{m}-epoch{e}" for m, e in RESUME_CASES])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, monkeypatch, reference_run, model, epoch):
    reference = reference_run(model)
    stub_speed(monkeypatch)
    run_dir = tmp_path / "run"
    with monkeypatch.context() as mp:
        interrupt_in_epoch(mp, epoch)
        with pytest.raises(KeyboardInterrupt):
            train_tiny(run_dir, model)
    assert not (run_dir / "summary.json").exists()
    if epoch > 1:  # the last finished epoch is on disk
        assert len(metrics(run_dir)) == epoch - 1
        assert load_state(run_dir / "last.state.pt")["epoch"] == epoch - 1
    else:
        assert not (run_dir / "last.state.pt").exists()
    runs.resume(run_dir, tiny_dataset(), "cpu")
    assert is_complete(run_dir)
    assert_same_run(reference, run_dir)


def test_resume_after_the_last_epoch_only_finishes_the_run(tmp_path, monkeypatch, reference_run):
    stub_speed(monkeypatch)
    reference = reference_run("cnn_seed")
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    (run_dir / "summary.json").unlink()  # interrupted after the last checkpoint, before the summary
    runs.resume(run_dir, tiny_dataset(), "cpu")
    assert_same_run(reference, run_dir)


def test_resume_of_an_early_stopped_run_does_not_train_on(tmp_path, monkeypatch):
    stub_speed(monkeypatch)
    stops = {"epochs": 6, "patience": 1, "min_delta": 10.0}  # stops after epoch 2 (see above)
    run_dir = train_tiny(tmp_path / "run", "cnn_seed", **stops)
    before = metrics(run_dir, drop_timing=True)
    assert len(before) == 2 and read_json(run_dir / "summary.json")["stopped_early"] is True
    (run_dir / "summary.json").unlink()
    runs.resume(run_dir, tiny_dataset(), "cpu")
    assert metrics(run_dir, drop_timing=True) == before
    summary = read_json(run_dir / "summary.json")
    assert summary["epochs_run"] == 2 and summary["stopped_early"] is True


def test_same_seed_gives_identical_runs(tmp_path, monkeypatch, reference_run):
    stub_speed(monkeypatch)
    assert_same_run(reference_run("cnn_seed"), train_tiny(tmp_path / "again", "cnn_seed"))


def test_threads_zero_means_the_default_even_after_a_run_that_set_threads(tmp_path, monkeypatch):
    if DEFAULT_THREADS == 1:
        pytest.skip("a one-thread machine cannot tell the difference")
    stub_speed(monkeypatch)
    train_tiny(tmp_path / "a", "cnn_seed", epochs=1, threads=1)
    train_tiny(tmp_path / "b", "cnn_seed", epochs=1, threads=0)
    assert read_json(tmp_path / "b" / "env.json")["threads"] == DEFAULT_THREADS


def test_another_seed_gives_another_run(tmp_path, monkeypatch, reference_run):
    stub_speed(monkeypatch)
    other = train_tiny(tmp_path / "seed7", "cnn_seed", seed=7)
    ref = reference_run("cnn_seed")
    assert metrics(ref, drop_timing=True) != metrics(other, drop_timing=True)
    assert not same_tensors(weights(ref / "last.safetensors"), weights(other / "last.safetensors"))


# ---------------------------------------------------------------- evaluation, schedules, speed

def test_evaluate_matches_a_hand_computed_report():
    torch.manual_seed(0)
    model = build_model("cnn_seed").eval()
    data = tiny_dataset()
    cfg = TrainConfig(eval_batch_size=7, channels_last=False)  # several batches, a ragged last one
    r, probs = evaluate(model, data.test_images, data.test_labels, cfg, "fp32")
    assert probs.shape == (20, 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(20))
    pred = probs.argmax(1)
    assert r["n"] == 20 and r["accuracy"] == pytest.approx((pred == data.test_labels).float().mean().item())
    nll = -torch.log(probs[torch.arange(20), data.test_labels]).mean().item()
    assert r["loss"] == pytest.approx(nll, rel=1e-4)
    cm = torch.tensor(r["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 20 and cm.diag().sum() == (pred == data.test_labels).sum()
    assert [c["support"] for c in r["per_class"]] == [2] * 10


def test_learning_rate_schedules():
    spe = 10
    const = TrainConfig(epochs=4)
    assert all(lr_factor(s, const, spe) == 1.0 for s in range(40))
    warm = TrainConfig(epochs=4, warmup_epochs=1, schedule="cosine")
    assert lr_factor(0, warm, spe) == pytest.approx(0.1) and lr_factor(9, warm, spe) == pytest.approx(1.0)
    assert lr_factor(10, warm, spe) == pytest.approx(1.0) and lr_factor(39, warm, spe) < 0.01
    one = TrainConfig(epochs=4, warmup_epochs=2, schedule="onecycle")
    assert lr_factor(19, one, spe) == pytest.approx(1.0) and lr_factor(30, one, spe) == pytest.approx(0.5)


def test_measure_inference_reports_positive_speed():
    r = measure_inference(build_model("cnn_seed"), CPU, "fp32", batch_size=8, repeats=1, latency_repeats=2)
    assert set(r) == {"infer_images_per_s", "latency_ms"}
    assert r["infer_images_per_s"] > 0 and r["latency_ms"] > 0


def test_matmul_gflops_counts_the_flops_of_the_timed_matmul(monkeypatch):
    # 2 n^3 FLOPs over the median of the timed calls: every call taking 0.5 ms, n=100 is 4 GFLOP/s
    clock = iter(range(100))
    monkeypatch.setattr("fmbench.engine.speed.time.perf_counter", lambda: next(clock) / 2000)
    assert matmul_gflops(torch.float32, n=100, repeats=3) == 4.0
    assert matmul_gflops(torch.bfloat16, n=64, repeats=2) > 0


def test_latency_runs_on_one_thread_and_restores_the_thread_count(monkeypatch):
    seen = []
    model = build_model("cnn_seed")
    real_forward = model.forward
    monkeypatch.setattr(model, "forward", lambda x: seen.append((x.shape[0], torch.get_num_threads())) or real_forward(x))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        measure_inference(model, CPU, "fp32", batch_size=8, repeats=1, latency_repeats=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert {t for b, t in seen if b == 1} == {1} and {t for b, t in seen if b == 8} == {2}


def test_fp16_training_uses_a_gradient_scaler(monkeypatch):
    """fp16 steps go through GradScaler (scale, unscale for clipping, step, update)."""
    import fmbench.engine.loop as L
    from fmbench.config import TrainConfig

    calls = []

    class SpyScaler(torch.amp.GradScaler):
        def scale(self, outputs):
            calls.append("scale")
            return super().scale(outputs)

        def step(self, optimizer, *a, **k):
            calls.append("step")
            return super().step(optimizer, *a, **k)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    cfg = TrainConfig(batch_size=8, epochs=1, grad_clip=1.0, channels_last=False, precision="fp32")
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, 2)
    x = torch.randint(0, 256, (16, 28, 28), dtype=torch.uint8)
    y = torch.arange(16) % 10
    scaler = SpyScaler("cpu", init_scale=2.0 ** 8)
    before = model[1].weight.detach().clone()
    out = L.train_one_epoch(model, model, x, y, cfg, opt, sched, torch.Generator().manual_seed(0), "fp32",
                            scaler=scaler)
    assert calls == ["scale", "step", "scale", "step"]
    assert math.isfinite(out["loss"]) and not torch.equal(before, model[1].weight)
