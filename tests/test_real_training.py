"""One real-data check: cnn_seed trained briefly on real Fashion-MNIST clearly beats chance (10%)
on the full 10,000-image test set.

Budget: one epoch on 4,000 stratified training images (40 steps of 100 at the study's Adam 1e-3),
no augmentation, 2% of the training set (1,200 images) held out for validation, one thread.
Measured on the shared 2-core CPU through this same command: test accuracy 0.654 for seed 42 in
bf16 (precision=auto there; identical on a rerun) and 0.641 in fp32; over seeds 42-48 in bf16
0.654, 0.655, 0.567, 0.618, 0.635, 0.678, 0.602 (weighted F1 0.52-0.64). 6-19 s per run, up to
45 s when other jobs saturate the cores.

Why not higher: the study's CNN uses Keras' BatchNorm momentum (running averages with 0.99), so
after 40 steps the running statistics have moved only 1 - 0.99**40 = 33% of the way from their
initial values and eval-mode accuracy lags the running train accuracy (about 0.75); recomputing
the BatchNorm statistics of the same weights gave 0.82. Longer runs did not help at this scale
(2 epochs: 0.49-0.53; 10,000 images in batches of 128: 0.52; lr 3e-4 or 5e-4: 0.51-0.69), because
the weights drift faster than the running averages follow. So the threshold is 0.5: five times
chance, 0.07 under the lowest of nine measurements, 0.15 under the seed used here.
"""

from __future__ import annotations

import pytest
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)
from helpers_engine import read_json, stub_speed

BUDGET = ("--set", "epochs=1", "--set", "train_size=4000", "--set", "batch_size=100", "--set", "val_fraction=0.02",
          "--set", "aug_hflip=0", "--set", "aug_vflip=0", "--set", "aug_zoom=0", "--set", "threads=1")


@pytest.mark.slow
def test_cnn_seed_briefly_trained_beats_chance_on_the_real_test_set(real_data_dir, run_cli, tmp_path, monkeypatch):
    stub_speed(monkeypatch)  # the inference benchmark is not what this test is about (it has its own)
    run_dir = tmp_path / "run"
    code, out, err = run_cli("train", "cnn_seed", "--data-dir", real_data_dir, "--no-download", "--device", "cpu",
                             *BUDGET, "--out", run_dir)
    assert code == 0, err
    test = read_json(run_dir / "eval.json")["splits"]["test"]
    assert test["n"] == 10_000
    assert test["accuracy"] > 0.5, f"test accuracy {test['accuracy']:.4f} after 1 epoch on 4,000 images"
    assert test["f1_weighted"] > 0.4  # lowest measured: 0.52
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "complete" and summary["test_accuracy"] == test["accuracy"]
