"""`fmbench` in-process: help for every command, `models`, `train` (run directory, refusal, resume,
Ctrl-C, divergence) and `evaluate`, on tiny synthetic IDX files."""

from __future__ import annotations

import argparse
import io
import json
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import write_tiny_idx
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)
from helpers_engine import (METRIC_KEYS, RUN_FILES, interrupt_in_epoch, metrics, read_json, same_tensors,
                            stub_speed, weights)

from fmbench import CLASSES, __version__, cli
from fmbench.data import load_fashion_mnist
from fmbench.engine.checkpoint import load_state
from fmbench.models import REGISTRY, build_model, count_params

# 40 train images -> 30 train / 10 val; 2 epochs of 4 steps; one thread (see helpers_engine).
SETS = ("--set", "epochs=2", "--set", "batch_size=8", "--set", "val_fraction=0.25", "--set", "threads=1")


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def missing_help(parser: argparse.ArgumentParser) -> list[str]:
    """Subcommands without a one-line help in `fmbench --help` or without an example in their help."""
    sub = _subparsers(parser)
    listed = {a.dest: a.help for a in sub._choices_actions}
    return [name for name, p in sub.choices.items()
            if not listed.get(name) or "example" not in p.format_help().lower()]


COMMANDS = sorted(_subparsers(cli.build_parser()).choices)


def train_argv(data_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["train", "cnn_seed", "--data-dir", str(data_dir), "--no-verify", "--no-download", "--device", "cpu",
            *SETS, *extra, "--out", str(run_dir)]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One `fmbench train cnn_seed` on tiny IDX files, shared by the read-only tests below."""
    root = tmp_path_factory.mktemp("cli-train")
    data_dir = write_tiny_idx(root / "idx")
    run_dir = root / "run"
    out, err = io.StringIO(), io.StringIO()
    before = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp, redirect_stdout(out), redirect_stderr(err):
        mp.setenv("FMBENCH_CACHE_DIR", str(root / "cache"))
        stub_speed(mp)
        code = cli.main(train_argv(data_dir, run_dir))
    torch.set_num_threads(before)
    return SimpleNamespace(code=code, out=out.getvalue(), err=err.getvalue(), run_dir=run_dir, data_dir=data_dir)


# ---------------------------------------------------------------- help

def test_top_level_help_has_examples(run_cli):
    code, out, _ = run_cli("--help")
    assert code == 0 and "example" in out
    for name in COMMANDS:
        assert name in out


def test_version(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0 and out.strip() == f"fmbench {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_help_has_an_example(run_cli, command):
    code, out, err = run_cli(command, "--help")
    assert code == 0, err
    assert "example" in out.lower() and f"fmbench {command}" in out


def test_no_registered_subcommand_lacks_help_or_example():
    assert missing_help(cli.build_parser()) == []


def test_the_help_check_catches_a_bare_subcommand():
    parser = cli.build_parser()
    _subparsers(parser).add_parser("bare")  # no help=, no epilog: must be reported
    assert missing_help(parser) == ["bare"]


def test_every_subcommand_module_is_registered():
    assert COMMANDS == sorted(cli.SUBCOMMANDS)


def test_no_command_prints_help_and_exits_2(run_cli):
    code, out, _ = run_cli()
    assert code == 2 and "usage: fmbench" in out


# ---------------------------------------------------------------- models

def test_models_lists_every_registered_model(run_cli):
    code, out, err = run_cli("models")
    assert code == 0, err
    for name, spec in REGISTRY.items():
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert f"{count_params(build_model(name)):,}" in line
        assert spec.description in line
        for preset in spec.presets:
            assert any(ln.strip().startswith(preset + " ") and spec.presets[preset].about in ln
                       for ln in out.splitlines())
    assert "19.44" in next(ln for ln in out.splitlines() if ln.startswith("cnn_seed "))  # MFLOP/img


# ---------------------------------------------------------------- train: the run directory

def test_train_writes_a_complete_run_directory(cli_run):
    run_dir = cli_run.run_dir
    assert cli_run.code == 0, cli_run.err
    assert cli_run.out == f"run directory: {run_dir}\n"
    assert "Traceback" not in cli_run.err
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(RUN_FILES)  # and no temporary files

    config = read_json(run_dir / "config.json")
    assert set(config) == {"format_version", "fmbench_version", "model", "family", "tier", "preset", "overrides",
                           "model_config", "train_config", "config_hash", "device", "data"}
    assert config["data"]["name"] == "idx" and len(config["data"]["key"]) == 16   # tiny random IDX files
    assert config["data"]["classes"] == list(CLASSES)
    assert (config["format_version"], config["model"], config["preset"]) == (2, "cnn_seed", "fast")
    assert (config["family"], config["tier"], config["device"]) == ("cnn", "study", "cpu")
    assert config["overrides"] == {"epochs": "2", "batch_size": "8", "val_fraction": "0.25", "threads": "1"}
    assert config["train_config"]["epochs"] == 2 and config["model_config"]["conv1"] == 64

    env = read_json(run_dir / "env.json")
    assert {"python", "torch", "numpy", "platform", "cpu", "device", "precision", "threads", "git_commit",
            "world_size", "global_batch_size", "command", "started"} <= set(env)
    assert env["torch"] == torch.__version__ and env["world_size"] == 1 and env["global_batch_size"] == 8
    assert env["device"].startswith("cpu") and env["threads"] == 1

    rows = metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2] and all(set(r) == METRIC_KEYS for r in rows)

    ev = read_json(run_dir / "eval.json")
    assert 1 <= ev["best_epoch"] <= 2 and set(ev["splits"]) == {"train", "val", "test"}
    for split, n in (("train", 30), ("val", 10), ("test", 20)):
        r = ev["splits"][split]
        assert {"loss", "accuracy", "f1_weighted", "n", "per_class", "confusion_matrix"} <= set(r)
        assert r["n"] == n and sum(map(sum, r["confusion_matrix"])) == n
        assert [c["class"] for c in r["per_class"]] == list(CLASSES)
        assert all(set(c) == {"class", "precision", "recall", "f1", "support"} for c in r["per_class"])

    data = load_fashion_mnist(cli_run.data_dir, verify=False, download=False)
    out = weights(run_dir / "test_outputs.safetensors")
    assert out["probs"].shape == (20, 10) and out["probs"].dtype == torch.float32
    torch.testing.assert_close(out["probs"].sum(1), torch.ones(20), rtol=0, atol=1e-3)
    assert out["labels"].dtype == torch.int64 and torch.equal(out["labels"], data.test_labels)

    summary = read_json(run_dir / "summary.json")
    assert {"status", "model", "params", "flops_per_image", "train_time_s", "epochs_run", "best_epoch",
            "stopped_early", "train_images_per_s", "infer_images_per_s", "latency_ms", "device", "precision",
            "test_hash", "pretrained"} <= set(summary)
    assert summary["status"] == "complete" and summary["model"] == "cnn_seed" and summary["pretrained"] is False
    assert summary["params"] == count_params(build_model("cnn_seed")) and summary["epochs_run"] == 2
    assert summary["best_epoch"] == ev["best_epoch"] and summary["test_hash"] == data.test_hash
    assert summary["precision"] == env["precision"]

    assert load_state(run_dir / "last.state.pt")["epoch"] == 2


def test_train_into_a_finished_run_is_refused(cli_run, run_cli):
    before = (cli_run.run_dir / "summary.json").read_bytes()
    code, out, err = run_cli(*train_argv(cli_run.data_dir, cli_run.run_dir))
    assert code == 2 and out == ""
    assert err.endswith(f"\nfmbench: error: {cli_run.run_dir} already holds a finished run; choose another --out\n") \
        or err == f"fmbench: error: {cli_run.run_dir} already holds a finished run; choose another --out\n"
    assert err.count("fmbench: error") == 1              # (the data may say where it came from first)
    assert (cli_run.run_dir / "summary.json").read_bytes() == before


def test_resume_of_a_finished_run_changes_nothing(cli_run, run_cli, tmp_path, monkeypatch):
    stub_speed(monkeypatch)
    run_dir = tmp_path / "run"
    shutil.copytree(cli_run.run_dir, run_dir)  # the shared run must stay as it is
    def files() -> dict[str, bytes]:   # every file, the TensorBoard folder's too
        return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}

    before = files()
    code, _, err = run_cli("train", "--resume", run_dir, "--data-dir", cli_run.data_dir, "--no-verify",
                           "--device", "cpu")
    assert code == 0, err
    assert files() == before
    assert f"{run_dir} is already complete; nothing to resume" in err


@pytest.mark.parametrize("argv, message", [
    (["train"], "missing MODEL (see `fmbench models`) or --resume RUN_DIR"),
    (["train", "cnn_seed", "--resume", "somewhere"], "give either MODEL or --resume RUN_DIR, not both"),
    (["train", "--resume", "no/such/run"], "no/such/run: run directory does not exist"),
    (["train", "cnn_resnet20", "--set", "depth=44"], "depth must be 6n + 2 between 8 and 38 (basic blocks; the "
                                                     "paper's code builds bottleneck blocks from 44), got 44"),
])
def test_train_argument_errors(run_cli, argv, message):
    code, out, err = run_cli(*argv)
    assert code == 2 and out == "" and err == f"fmbench: error: {message}\n"


def test_ctrl_c_saves_the_last_epoch_and_resume_finishes_the_run(run_cli, tiny_idx_dir, tmp_path, monkeypatch,
                                                                 cli_run):
    stub_speed(monkeypatch)
    run_dir = tmp_path / "run"
    with monkeypatch.context() as mp:
        interrupt_in_epoch(mp, 2)  # Ctrl-C after the first step of epoch 2
        code, out, err = run_cli(*train_argv(tiny_idx_dir, run_dir))
    assert code == 130
    assert f"fmbench train --resume {run_dir}" in err and "Traceback" not in err
    assert load_state(run_dir / "last.state.pt")["epoch"] == 1
    assert (run_dir / "last.safetensors").is_file() and (run_dir / "best.safetensors").is_file()
    assert [r["epoch"] for r in metrics(run_dir)] == [1]
    assert not (run_dir / "summary.json").exists()

    code, out, err = run_cli("train", "--resume", run_dir, "--data-dir", tiny_idx_dir, "--no-verify", "--device", "cpu")
    assert code == 0, err
    assert f"resuming {run_dir} after epoch 1" in err and out == f"run directory: {run_dir}\n"
    assert read_json(run_dir / "summary.json")["status"] == "complete"
    # the same command uninterrupted (the module's run) gave bit-identical results
    assert metrics(run_dir, drop_timing=True) == metrics(cli_run.run_dir, drop_timing=True)
    assert same_tensors(weights(run_dir / "best.safetensors"), weights(cli_run.run_dir / "best.safetensors"))
    assert same_tensors(weights(run_dir / "last.safetensors"), weights(cli_run.run_dir / "last.safetensors"))


def test_divergence_is_exit_2_with_one_error_line(run_cli, tiny_idx_dir, tmp_path, monkeypatch):
    stub_speed(monkeypatch)
    code, out, err = run_cli(*train_argv(tiny_idx_dir, tmp_path / "run", "--set", "lr=1e30"))
    assert code == 2 and out == "" and "Traceback" not in err
    errors = [ln for ln in err.splitlines() if "error" in ln]
    assert len(errors) == 1 and errors[0].startswith("fmbench: error: loss became ")
    assert "Try a lower lr or --set grad_clip=1" in errors[0]
    assert not (tmp_path / "run" / "summary.json").exists()


# ---------------------------------------------------------------- evaluate

def test_evaluate_json_is_one_object_matching_the_run(cli_run, run_cli):
    code, out, err = run_cli("evaluate", cli_run.run_dir, "--json", "--data-dir", cli_run.data_dir, "--no-verify",
                             "--device", "cpu")
    assert code == 0, err
    assert out.count("\n") == 1
    r = json.loads(out)
    assert {"split", "loss", "accuracy", "f1_weighted", "per_class", "confusion_matrix"} <= set(r)
    assert r["split"] == "test" and r["n"] == 20 and len(r["per_class"]) == 10
    assert len(r["confusion_matrix"]) == 10 and all(len(row) == 10 for row in r["confusion_matrix"])
    stored = read_json(cli_run.run_dir / "eval.json")["splits"]["test"]
    assert r["confusion_matrix"] == stored["confusion_matrix"]  # the best weights, evaluated again
    assert r["accuracy"] == stored["accuracy"] and r["loss"] == pytest.approx(stored["loss"], rel=1e-5)


def test_evaluate_text_report_and_other_split(cli_run, run_cli):
    code, out, err = run_cli("evaluate", cli_run.run_dir, "--split", "val", "--data-dir", cli_run.data_dir,
                             "--no-verify", "--device", "cpu")
    assert code == 0, err
    assert out.startswith("split val (10 images): loss ")
    assert "confusion matrix (rows: true, columns: predicted)" in out
    for name in CLASSES:
        assert name in out


@pytest.mark.parametrize("remove", ["the model's weights", "config.json"])
def test_evaluate_an_incomplete_run_names_the_missing_file(cli_run, run_cli, tmp_path, remove):
    from fmbench.runs import weights_file
    from fmbench.spec import read_spec as read_config

    run_dir = tmp_path / "run"
    shutil.copytree(cli_run.run_dir, run_dir)
    if remove != "config.json":   # best.safetensors, or last.safetensors where the recipe keeps the last epoch
        remove = weights_file(run_dir, read_config(run_dir)).name
    (run_dir / remove).unlink()
    code, out, err = run_cli("evaluate", run_dir, "--data-dir", cli_run.data_dir, "--no-verify", "--device", "cpu")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"{run_dir / remove}" in err and "missing" in err


def test_evaluate_a_missing_run_dir(run_cli, tmp_path, tiny_idx_dir):
    code, out, err = run_cli("evaluate", tmp_path / "nope", "--data-dir", tiny_idx_dir, "--no-verify")
    assert code == 2 and err == f"fmbench: error: {tmp_path / 'nope'}: run directory does not exist\n"


def test_evaluate_needs_a_run_dir_or_weights(run_cli):
    code, _, err = run_cli("evaluate")
    assert code == 2 and "give one of RUN_DIR, --weights NAME_OR_PATH or --onnx FILE" in err


# ---------------------------------------------------------------- the file system says no; the reader goes away

@pytest.mark.parametrize("command", [("train", "cnn_seed", "--set", "epochs=1"),
                                     ("run", "--models", "cnn_seed", "--set", "epochs=1"),
                                     ("compare", "no-such-run", "--no-images")])
@pytest.mark.parametrize("below", [False, True])
def test_out_naming_an_existing_file_is_a_user_error(run_cli, tiny_idx_dir, tmp_path, command, below):
    target = tmp_path / "taken"
    target.write_text("not a directory\n")
    out = target / "sub" if below else target
    data = [] if command[0] == "compare" else ["--data-dir", tiny_idx_dir, "--no-verify"]
    code, _, err = run_cli(*command, "--out", out, *data)
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and f"{out}: cannot be a directory, {target} is an existing file" in err
    assert target.read_text() == "not a directory\n"        # nothing overwritten


def test_a_full_disk_mid_run_is_one_line_and_the_run_resumes(run_cli, make_tiny_idx, tmp_path, monkeypatch):
    from fmbench.engine import checkpoint
    from fmbench.fileio import atomic_path, write_bytes

    stub_speed(monkeypatch)
    data_dir = make_tiny_idx(tmp_path / "idx", n_train=200, n_test=20)
    run_dir = tmp_path / "run"
    writes = {"n": 0}

    def disk_fills_up(path, data):               # epoch 1 writes best + last; epoch 2's first write fails
        writes["n"] += 1
        if writes["n"] == 3:
            with atomic_path(path) as tmp:            # half the bytes written, then the disk is full
                tmp.write_bytes(data[: len(data) // 2])
                raise OSError(28, "No space left on device", str(path))
        write_bytes(path, data)

    monkeypatch.setattr(checkpoint, "write_bytes", disk_fills_up)
    args = ("--data-dir", data_dir, "--no-verify", "--device", "cpu")
    code, _, err = run_cli("train", "cnn_seed", "--out", run_dir, "--set", "epochs=2", "--set", "batch_size=16",
                           "--set", "threads=1", *args)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"fmbench: error: {run_dir}/")
    assert err.strip().endswith(".safetensors: No space left on device")
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]      # no temporary file left
    assert len(metrics(run_dir)) == 1                                          # epoch 1 is complete
    monkeypatch.setattr(checkpoint, "write_bytes", write_bytes)                # space again
    code, _, err = run_cli("train", "--resume", run_dir, *args)
    assert code == 0, err
    assert [m["epoch"] for m in metrics(run_dir)] == [1, 2] and (run_dir / "summary.json").is_file()


def test_output_into_a_closed_pipe_exits_quietly():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "fmbench", "models"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()                                       # the reader is gone before any output
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_a_second_writer_of_a_run_directory_is_refused(run_cli, tiny_idx_dir, tmp_path):
    import os

    from fmbench.fileio import writer_lock

    run_dir = tmp_path / "run"
    with writer_lock(run_dir):                    # another `fmbench train` is writing here
        code, _, err = run_cli("train", "cnn_seed", "--out", run_dir, "--set", "epochs=1",
                               "--data-dir", tiny_idx_dir, "--no-verify")
    assert code == 2 and "Traceback" not in err
    assert f"{run_dir}: this run directory is being written by process {os.getpid()}" in err
    assert not (run_dir / "config.json").exists()           # nothing of the second run was written
    with writer_lock(run_dir):                    # released: the lock can be taken again
        pass


def test_class_names_come_from_the_data_source(run_cli, make_tiny_idx, tmp_path):
    from PIL import Image

    data_dir = make_tiny_idx(tmp_path / "idx", n_train=200, n_test=20)
    names = [f"kind-{i}" for i in range(10)]
    (data_dir / "classes.txt").write_text("\n".join(names) + "\n")
    run_dir = tmp_path / "run"
    code, _, err = run_cli("train", "cnn_seed", "--out", run_dir, "--set", "epochs=1", "--set", "batch_size=16",
                           "--set", "threads=1", "--data-dir", data_dir, "--no-verify")
    assert code == 0, err
    assert read_json(run_dir / "config.json")["data"]["classes"] == names
    assert [row["class"] for row in read_json(run_dir / "eval.json")["splits"]["test"]["per_class"]] == names
    img = tmp_path / "x.png"
    Image.new("L", (28, 28), 200).save(img)
    code, out, err = run_cli("predict", run_dir, img, "--json")
    assert code == 0, err
    assert json.loads(out)["predictions"][0]["top"][0]["class"] in names


@pytest.mark.parametrize("text, message", [("a\nb\nc\n", "expected 10 distinct class names, one per line (labels 0-9), found 3"),
                                           ("same\n" * 10, "found 10 with duplicates")])
def test_a_bad_classes_file_is_one_line_naming_it(run_cli, make_tiny_idx, tmp_path, text, message):
    data_dir = make_tiny_idx(tmp_path / "idx", n_train=200, n_test=20)
    (data_dir / "classes.txt").write_text(text)
    code, _, err = run_cli("data", "--data-dir", data_dir, "--no-verify")
    assert code == 2 and f"{data_dir / 'classes.txt'}: expected 10 distinct" in err and message in err
    assert "Traceback" not in err


def test_the_cli_is_a_thin_layer_over_the_public_api(cli_run, run_cli, tmp_path, monkeypatch):
    """train, evaluate, predict and compare call exactly fmbench.api's functions."""
    from PIL import Image

    from fmbench import api

    calls = []
    for name in ("train", "resume", "evaluate", "predict", "compare"):
        real = getattr(api, name)
        monkeypatch.setattr(api, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    stub_speed(monkeypatch)
    data = ["--data-dir", cli_run.data_dir, "--no-verify", "--device", "cpu"]
    assert run_cli(*train_argv(cli_run.data_dir, tmp_path / "run"))[0] == 0
    assert run_cli("train", "--resume", tmp_path / "run", *data)[0] == 0
    assert run_cli("evaluate", cli_run.run_dir, *data)[0] == 0
    Image.new("L", (28, 28)).save(tmp_path / "x.png")
    assert run_cli("predict", cli_run.run_dir, tmp_path / "x.png")[0] == 0
    assert run_cli("compare", cli_run.run_dir, "--out", tmp_path / "report", "--no-images")[0] == 0
    assert calls == ["train", "resume", "evaluate", "predict", "compare"]


@pytest.mark.parametrize("argv, name, args, kwargs", [
    (["run", "--models", "cnn_seed", "--seeds", "2", "--set", "epochs=1"], "run_study", (["cnn_seed"], None),
     {"seeds": 2, "pretrained": False, "epochs": "1"}),
    (["run", "--pretrained"], "run_study", (None, None), {"seeds": 1, "pretrained": True}),
    (["study", "data-size", "--sizes", "100,200", "--seeds", "1"], "study_data_size",
     (["cnn_seed", "vit_seed"], "100,200"), {"seeds": 1, "preset": None}),
    (["study", "robustness", "--weights", "cnn_seed", "--images", "all", "--severities", "3"], "study_robustness",
     ([], ["cnn_seed"]), {"images": None, "severities": "3", "corruptions": None, "baseline": None}),
])
def test_run_and_study_are_thin_layers_over_the_public_api(run_cli, tmp_path, monkeypatch, argv, name, args, kwargs):
    from fmbench import api

    calls = []
    monkeypatch.setattr(api, name, lambda *a, **k: calls.append((a, k)) or tmp_path / "report.html")
    code, out, err = run_cli(*argv, "--out", tmp_path / "out")
    assert code == 0, err
    assert out == f"report: {tmp_path / 'report.html'}\n"
    (a, k), = calls
    assert a == args and {key: k[key] for key in kwargs} == kwargs and k["out"] == tmp_path / "out"
    assert callable(k["data"])                    # the data loads only once the API has checked the arguments


def test_api_train_refuses_another_run_and_resume_continues(cli_run, tmp_path, monkeypatch):
    import fmbench
    from fmbench.errors import ConfigError

    stub_speed(monkeypatch)
    data = fmbench.load_data(cli_run.data_dir, verify=False, download=False)
    with pytest.raises(ConfigError, match="holds another run"):
        fmbench.train("cnn_seed", out=cli_run.run_dir, data=data, quiet=True, epochs=1, train_size=100)
    run = fmbench.resume(cli_run.run_dir, data, device="cpu", quiet=True)       # finished: returned as it is
    assert run.path == cli_run.run_dir and run.summary["status"] == "complete"
