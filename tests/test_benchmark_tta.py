"""benchmarks/time_to_accuracy.py: seeds, the summary table, the JSON record and the exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)


@pytest.fixture
def data_dir(make_tiny_idx, tmp_path: Path) -> Path:
    return make_tiny_idx(tmp_path / "tiny", n_train=200, n_test=50)


@pytest.fixture(scope="module")
def tta(benchmark_script):
    return benchmark_script("time_to_accuracy")


TINY = ["--model", "cnn_seed", "--preset", "fast", "--set", "epochs=2", "--set", "warmup_epochs=0",
        "--set", "conv1=4", "--set", "conv2=4", "--set", "dense=8", "--no-verify"]


def test_seeds_table_and_json(tta, data_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tta.json"
    code = tta.main([*TINY, "--data-dir", str(data_dir), "--seeds", "2", "--target", "0.01",
                     "--budget", "3600", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    result = json.loads(out.read_text())
    assert [r["seed"] for r in result["runs"]] == [42, 43]          # the preset's seed, then the next
    assert all(r["epochs"] == 2 and len(r["epoch_records"]) == 2 for r in result["runs"])
    accs = [r["test_accuracy"] for r in result["runs"]]
    s = result["summary"]
    assert s["accuracy_min"] == min(accs) and s["accuracy_max"] == max(accs)
    assert s["accuracy_mean"] == pytest.approx(sum(accs) / 2, abs=1e-5)
    assert s["met"] and s["time_met"] and s["seconds_max"] <= 3600
    assert "target MET" in printed and "mean" in printed and "max" in printed
    # the host's speed before each seed, in the run's precision (fp32 here: one thread, tiny model)
    assert all(r["host_gflops"] > 0 and r["omp_wait_policy"] for r in result["runs"]) and "host GF/s" in printed


def test_missed_target_exits_1(tta, data_dir: Path, capsys) -> None:
    code = tta.main([*TINY, "--data-dir", str(data_dir), "--target", "1.0", "--every-epoch"])
    printed = capsys.readouterr().out
    assert code == 1 and "target MISSED" in printed


def test_time_budget_counts(tta) -> None:
    runs = [{"seconds": 10.0, "test_accuracy": 0.96}, {"seconds": 30.0, "test_accuracy": 0.95}]
    s = tta.summarize(runs, target=0.95, budget=15)
    assert s["accuracy_met"] and s["time_met"] is False and not s["met"]
    assert s["seconds_mean"] == 20.0 and s["accuracy_mean"] == pytest.approx(0.955)


def test_bad_setting_is_one_line(tta, data_dir: Path, capsys) -> None:
    code = tta.main([*TINY, "--data-dir", str(data_dir), "--set", "lr=-1"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == ["error: lr must be > 0, got -1.0"]


@pytest.mark.parametrize("argv, message", [(["--seeds", "0"], "--seeds must be >= 1"),
                                           (["--target", "1.5"], "--target is a test accuracy in (0, 1]")])
def test_bad_arguments_exit_2_with_the_reason(tta, argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        tta.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_resume_keeps_recorded_seeds(tta, data_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tta.json"
    common = [*TINY, "--data-dir", str(data_dir), "--target", "0.01", "--json", str(out)]
    assert tta.main([*common, "--seeds", "1"]) == 0
    first = json.loads(out.read_text())["runs"][0]
    assert tta.main([*common, "--seeds", "2", "--resume"]) == 0
    result = json.loads(out.read_text())
    assert [r["seed"] for r in result["runs"]] == [42, 43]
    assert result["runs"][0] == first                       # the recorded seed is kept, not rerun
    assert result["summary"]["seeds"] == 2 and "cpu" in result["runs"][1]
    assert "resuming: seed(s) 42" in capsys.readouterr().err


def test_resume_refuses_another_benchmarks_record(tta, data_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tta.json"
    common = [*TINY, "--data-dir", str(data_dir), "--target", "0.01", "--json", str(out)]
    assert tta.main(common) == 0
    capsys.readouterr()
    assert tta.main([*common, "--set", "lr=0.01", "--seeds", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "recorded with another overrides" in err and str(out) in err
    out.write_text("[1, 2]")
    assert tta.main([*common, "--seeds", "2", "--resume"]) == 2
    assert "not a time_to_accuracy record" in capsys.readouterr().err
    assert tta.main([*common, "--seeds", "2"]) == 0
    capsys.readouterr()
    assert tta.main([*common, "--seeds", "1", "--resume"]) == 2       # would drop seed 43 from the record
    assert "holds 2 seeds, more than --seeds 1" in capsys.readouterr().err
    assert len(json.loads(out.read_text())["runs"]) == 2
    with pytest.raises(SystemExit):
        tta.main([*TINY, "--data-dir", str(data_dir), "--resume"])   # --resume without --json


def test_resume_reads_records_from_before_the_host_probe(tta, data_dir: Path, tmp_path: Path, capsys) -> None:
    # records written before host_gflops and omp_wait_policy existed still resume and print
    out = tmp_path / "tta.json"
    common = [*TINY, "--data-dir", str(data_dir), "--target", "0.01", "--json", str(out)]
    assert tta.main([*common, "--seeds", "1"]) == 0
    old = json.loads(out.read_text())
    for r in old["runs"]:
        del r["host_gflops"], r["omp_wait_policy"]
    out.write_text(json.dumps(old))
    capsys.readouterr()
    assert tta.main([*common, "--seeds", "1", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "OMP_WAIT_POLICY=not recorded" in printed and "host GF/s" in printed
