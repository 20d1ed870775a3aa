"""benchmarks/ab_overrides.py: alternating variants of one preset, their speed ratios and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)

TINY = ["--model", "cnn_seed", "--preset", "fast", "--steps", "2", "--rounds", "2", "--no-verify"]


@pytest.fixture(scope="module")
def ab(benchmark_script):
    return benchmark_script("ab_overrides")


def test_variants_are_timed_against_the_first(ab, make_tiny_idx, tmp_path: Path, capsys) -> None:
    data_dir = make_tiny_idx(tmp_path / "tiny", n_train=200, n_test=50)
    out = tmp_path / "ab.json"
    code = ab.main([*TINY, "--data-dir", str(data_dir), "--variant", "small=conv1=4,conv2=4,dense=8",
                    "--variant", "wider=conv1=8,conv2=8,dense=8", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert list(result["variants"]) == ["small", "wider"]
    assert result["variants"]["small"]["ratio"] == 1.0
    assert result["variants"]["wider"]["overrides"] == {"conv1": "8", "conv2": "8", "dense": "8"}
    assert all(v["images_per_s"] > 0 for v in result["variants"].values())
    assert "wider" in capsys.readouterr().out


@pytest.mark.parametrize("variant, message", [
    ("nameonly", "--variant 'nameonly': expected NAME=key=value"),
    ("a=nosuch=1", "unknown setting 'nosuch'"),
    ("a=lr", "--set 'lr': expected KEY=VALUE"),
])
def test_bad_variant_is_one_line_and_exit_2(ab, variant: str, message: str, capsys) -> None:
    assert ab.main([*TINY, "--variant", variant]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_lsa_scores_benchmark_runs(benchmark_script, capsys) -> None:
    assert benchmark_script("lsa_scores").main(["--batch", "2", "--rounds", "1", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    assert "LSA (CPU view)" in out and "x1.000" in out
