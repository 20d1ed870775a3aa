"""TensorBoard event files (engine/tensorboard.py): every run's epochs as scalars in RUN_DIR/tb/,
equal to metrics.jsonl, continued without duplicates on resume, and nothing required of a run
when tensorboardX is not installed.

The files are read back as TensorBoard reads them: TFRecords of `Event` protobufs (tensorboardX's
own generated classes), merged in file-name order, a session's START event purging the steps from
its own on (the purge step).
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)
from helpers_engine import FAST, interrupt_in_epoch, metrics, stub_speed, tiny_dataset, tiny_preset

from fmbench import rundir as R
from fmbench import runs
from fmbench.engine import tensorboard as T
from fmbench.spec import make_spec


def _execute(run_dir: Path, **overrides) -> Path:
    """A tiny cnn_seed run finished on the validation split (no test set, no explanation: fast)."""
    data = tiny_dataset()
    spec = make_spec("cnn_seed", tiny_preset("cnn_seed"), {**FAST, **overrides}).on(data, "cpu")
    return runs.execute(spec, run_dir, data, "cpu", explain=False, test=False)


def _records(path: Path) -> list[bytes]:
    """The payloads of one TFRecord file (length, its CRC, payload, its CRC), checked for framing."""
    data, pos, out = path.read_bytes(), 0, []
    while pos < len(data):
        (n,) = struct.unpack("<Q", data[pos:pos + 8])
        out.append(data[pos + 12:pos + 12 + n])
        pos += 12 + n + 4
    assert pos == len(data), f"{path}: a truncated record"
    return out


def read_events(tb_dir: Path) -> tuple[dict[str, dict[int, float]], list[dict[str, list[int]]]]:
    """({tag: {step: value}} as TensorBoard merges the files, [{tag: [steps]} of each file])."""
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    merged: dict[str, dict[int, float]] = {}
    per_file = []
    for path in sorted(tb_dir.glob("events.out.tfevents.*")):
        steps: dict[str, list[int]] = {}
        for payload in _records(path):
            event = Event.FromString(payload)
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                for series in merged.values():    # the purge step: this session rewrites from here on
                    for step in [s for s in series if s >= event.step]:
                        del series[step]
            for value in event.summary.value:
                merged.setdefault(value.tag, {})[event.step] = value.simple_value
                steps.setdefault(value.tag, []).append(event.step)
        per_file.append(steps)
    return merged, per_file


def assert_events_equal_metrics(run_dir: Path) -> None:
    """Every TAGS series holds each epoch of metrics.jsonl once, with its value (as float32)."""
    merged, _ = read_events(run_dir / R.TB)
    rows = metrics(run_dir)
    assert set(merged) == set(T.TAGS.values())
    for key, tag in T.TAGS.items():
        assert merged[tag] == {r["epoch"]: float(np.float32(r[key])) for r in rows}, tag


@pytest.fixture
def with_tensorboardx():
    pytest.importorskip("tensorboardX")


def test_a_run_writes_its_epochs_as_tensorboard_scalars(tmp_path, monkeypatch, with_tensorboardx):
    stub_speed(monkeypatch)
    run_dir = _execute(tmp_path / "run", epochs=3)
    files = sorted((run_dir / R.TB).iterdir())
    assert len(files) == 1 and files[0].name.startswith("events.out.tfevents.")
    assert [r["epoch"] for r in metrics(run_dir)] == [1, 2, 3]
    assert_events_equal_metrics(run_dir)


def test_a_folder_of_runs_shows_each_run_by_its_directory(tmp_path, monkeypatch, with_tensorboardx):
    """`tensorboard --logdir DIR` names a run by the folder holding its event files: RUN_NAME/tb."""
    stub_speed(monkeypatch)
    for seed in (1, 2):
        _execute(tmp_path / "trials" / f"run-{seed}", epochs=1, seed=seed)
    holders = {p.parent.relative_to(tmp_path / "trials").as_posix() for p in (tmp_path / "trials").rglob("*tfevents*")}
    assert holders == {"run-1/tb", "run-2/tb"}


def test_a_resumed_run_continues_its_events_without_duplicate_steps(tmp_path, monkeypatch, with_tensorboardx):
    stub_speed(monkeypatch)
    run_dir = tmp_path / "run"
    with monkeypatch.context() as mp:
        interrupt_in_epoch(mp, 3)
        with pytest.raises(KeyboardInterrupt):
            _execute(run_dir, epochs=4)
    runs.resume(run_dir, tiny_dataset(), "cpu")
    _, per_file = read_events(run_dir / R.TB)
    assert [steps["loss/val"] for steps in per_file] == [[1, 2], [3, 4]]   # a new file for the new session
    assert_events_equal_metrics(run_dir)


def test_a_session_purges_the_steps_it_rewrites(tmp_path, with_tensorboardx):
    """An earlier file holding steps past the resumed epoch (as metrics.jsonl may, `keep_epochs`)
    is overridden from that step on, as TensorBoard reads it."""
    record = {k: 0.5 for k in T.TAGS}
    with T.EpochEvents(tmp_path) as events:
        for epoch in (1, 2, 3):
            events.write({**record, "epoch": epoch})
    with T.EpochEvents(tmp_path, first_epoch=2) as events:
        events.write({**record, "epoch": 2, "val_loss": 0.25})
    merged, per_file = read_events(tmp_path / R.TB)
    assert len(per_file) == 2
    assert merged["loss/val"] == {1: 0.5, 2: 0.25}


def test_a_session_that_trains_no_epoch_writes_no_file(tmp_path, with_tensorboardx):
    T.EpochEvents(tmp_path).close()
    assert not (tmp_path / R.TB).exists()


def test_shipped_weights_bring_their_curve(tmp_path, monkeypatch, with_tensorboardx):
    stub_speed(monkeypatch)
    run_dir = runs.evaluate_shipped("cnn_seed", runs.shipped_run_dir("cnn_seed", tmp_path),
                                   tiny_dataset(n_train=100), "cpu")   # a 10% validation split of every class
    assert len(metrics(run_dir)) > 1
    assert_events_equal_metrics(run_dir)


def test_a_run_without_tensorboardx_trains_and_says_so_once(tmp_path, monkeypatch, capsys):
    stub_speed(monkeypatch)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)   # `import tensorboardX` raises ImportError
    T._say_off.cache_clear()
    run_dir = _execute(tmp_path / "run", epochs=2)
    assert R.is_complete(run_dir) and len(metrics(run_dir)) == 2
    assert not (run_dir / R.TB).exists()
    err = capsys.readouterr().err
    assert err.count("no TensorBoard event files: tensorboardX is not installed") == 1, err
    T._say_off.cache_clear()
