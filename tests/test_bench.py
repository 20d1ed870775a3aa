"""The throughput benchmark (`fmbench bench`, fmbench/bench.py) and its reference loop, on tiny data."""

from __future__ import annotations

import json

import pytest
import torch
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)

from fmbench import bench
from fmbench.data import load_fashion_mnist
from fmbench.reference import REFERENCES, make_reference, train_steps


@pytest.fixture
def tiny_data(tiny_idx_dir):
    return load_fashion_mnist(tiny_idx_dir, verify=False, download=False)


@pytest.mark.parametrize("name", REFERENCES)
def test_reference_loop_trains(tiny_data, name):
    ref = make_reference(name, tiny_data.train_images, tiny_data.train_labels)
    before = [p.detach().clone() for p in ref.model.parameters()]
    assert train_steps(ref, ref.batches(), 2) == 2 * len(tiny_data.train_labels)   # one 40-image batch per step
    assert any(not torch.equal(a, p) for a, p in zip(before, ref.model.parameters()))


def test_reference_unknown_model(tiny_data):
    with pytest.raises(ValueError, match="no reference loop"):
        make_reference("nope", tiny_data.train_images, tiny_data.train_labels)


def test_bench_model_reports_both_sides(tiny_data):
    r = bench.bench_model("cnn_seed", tiny_data, steps=1, rounds=2)
    for side in ("reference", "fmbench"):
        assert r[side]["train_images_per_s"] > 0 and len(r[side]["rounds"]) == 2
        assert r[side]["infer_images_per_s"] > 0 and r[side]["latency_ms"] > 0
    assert r["reference"]["precision"] == "fp32" and r["reference"]["batch_size"] == 1024
    assert r["fmbench"]["batch_size"] == 1024            # the study's recipe (seed preset)
    assert r["train_speedup"] > 0 and r["peak_rss_mb"] > 0


def test_bench_table_and_json(tiny_data, tmp_path):
    result = bench.run(tiny_data, ["vit_seed"], steps=1, rounds=1)
    text = bench.table(result)
    assert "vit_seed" in text and "reference" in text and "fmbench" in text and "speedup" in text
    bench.write_json(result, tmp_path / "b.json")
    back = json.loads((tmp_path / "b.json").read_text())
    assert back["models"]["vit_seed"]["fmbench"]["train_images_per_s"] > 0
    assert back["machine"]["threads"] == 1


def test_bench_help_has_an_example(run_cli):
    code, out, _ = run_cli("bench", "--help")
    assert code == 0
    assert "example" in out and "--steps" in out and "--json" in out


def test_bench_cli_writes_json(run_cli, tiny_idx_dir, tmp_path):
    out_json = tmp_path / "bench.json"
    code, out, err = run_cli("bench", "--models", "cnn_seed", "--steps", "1", "--rounds", "1", "--threads", "1",
                             "--data-dir", tiny_idx_dir, "--no-verify", "--no-download", "--json", out_json)
    assert code == 0, err
    assert "cnn_seed" in out and "speedup" in out
    assert json.loads(out_json.read_text())["models"]["cnn_seed"]["train_speedup"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--models", "nope"], "unknown model"),
    (["--steps", "0"], "--steps"),
    (["--models", ","], "at least one model"),
])
def test_bench_cli_user_errors(run_cli, tiny_idx_dir, argv, message):
    code, _, err = run_cli("bench", *argv, "--data-dir", tiny_idx_dir, "--no-verify", "--no-download")
    assert code == 2 and message in err
