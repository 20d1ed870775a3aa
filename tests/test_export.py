"""ONNX export: parity with PyTorch for every registered model at batch 1 and 256, the card, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)

pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency (pip install -e '.[test]')")

from fmbench.export import _session, export_onnx, onnx_logits  # noqa: E402
from fmbench.models import REGISTRY, build_model, resolve_config  # noqa: E402


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_export_matches_pytorch_at_batch_1_and_256(name, tmp_path):
    torch.manual_seed(0)
    model_cfg, _ = resolve_config(name, None, {})
    model = build_model(name, model_cfg).eval()
    images = torch.randint(0, 256, (256, 28, 28), dtype=torch.uint8)
    card = export_onnx(model, name, {"test": True}, tmp_path / f"{name}.onnx", images)
    assert card["check"]["top1_agreement"] == 1.0 and card["check"]["max_prob_diff"] < 1e-4
    session = _session(tmp_path / f"{name}.onnx")
    for batch in (1, 256):
        with torch.inference_mode():
            expected = model(images[:batch, None].float() / 255).numpy()
        got = onnx_logits(session, images[:batch])
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    saved = json.loads((tmp_path / f"{name}.json").read_text())
    assert saved["input"]["shape"] == ["batch", 1, 28, 28] and saved["sha256"] == card["sha256"]


def test_export_and_evaluate_from_the_command_line(run_cli, tiny_idx_dir, tmp_path):
    out = tmp_path / "m.onnx"
    data = ("--data-dir", tiny_idx_dir, "--no-verify", "--no-download")
    code, stdout, err = run_cli("export", "--weights", "cnn_seed", "--onnx", out, *data)
    assert code == 0, err
    assert "top-1 agreement 100.00%" in stdout and out.is_file() and out.with_suffix(".json").is_file()
    code, stdout, err = run_cli("evaluate", "--onnx", out, "--json", *data)
    assert code == 0, err
    r = json.loads(stdout)
    assert r["model"] == "cnn_seed" and r["n"] == 20 and 0 <= r["accuracy"] <= 1


@pytest.mark.parametrize("setup, args, message", [
    (None, ("export", "--weights", "cnn_seed", "--onnx", "m.txt"), "must end in .onnx"),
    (None, ("export", "--onnx", "m.onnx"), "give either RUN_DIR or --weights"),
    (None, ("export", "--weights", "cnn_seed", "--onnx", "m.onnx", "--opset", "3"), "--opset must be between"),
    ("garbage", ("evaluate", "--onnx", "m.onnx"), "not a loadable ONNX model"),
    ("changed", ("evaluate", "--onnx", "m.onnx"), "SHA-256 differs from its card"),
    (None, ("evaluate", "--onnx", "missing.onnx"), "no such ONNX file"),
    ("garbage", ("evaluate", "--onnx", "m.onnx", "--split", "val"), "--onnx evaluates the test split only"),
])
def test_bad_export_input_is_one_line_and_exit_2(run_cli, tiny_idx_dir, tmp_path, monkeypatch, setup, args, message):
    monkeypatch.chdir(tmp_path)
    if setup == "garbage":
        (tmp_path / "m.onnx").write_bytes(b"not onnx")
    if setup == "changed":
        (tmp_path / "m.onnx").write_bytes(b"not onnx")
        (tmp_path / "m.json").write_text(json.dumps({"sha256": "0" * 64}))
    code, _, err = run_cli(*args, "--data-dir", tiny_idx_dir, "--no-verify", "--no-download")
    assert code == 2 and message in err and "Traceback" not in err
