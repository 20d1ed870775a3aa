"""The public API: docs/api.md's examples run as written, errors are typed, and the notebook runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)

import fmbench
from fmbench.errors import ConfigError, RunDirError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_examples_in_docs_api_md_run(real_data_dir, monkeypatch):
    monkeypatch.setenv("FMBENCH_DATA_DIR", str(real_data_dir))
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)
    assert len(blocks) >= 5
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)   # noqa: S102 - our own documentation
    assert namespace["run"].test_accuracy > 0.2          # 1,000 images, one epoch: well above chance (0.1)


def test_the_api_is_at_the_top_and_import_stays_light():
    import fmbench.api

    for name in fmbench.api.__all__:
        assert getattr(fmbench, name) is getattr(fmbench.api, name)
    import subprocess
    import sys

    code = "import sys, fmbench; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_errors_are_typed_never_system_exit(tmp_path):
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        fmbench.create_model("nope")
    with pytest.raises(ConfigError, match="takes no config overrides"):
        fmbench.create_model("cnn_seed", pretrained=True, conv1=8)
    with pytest.raises(ConfigError, match="unknown setting"):
        fmbench.create_model("vit_seed", width=3)
    with pytest.raises(RunDirError):
        fmbench.load_run(tmp_path)
    with pytest.raises(ConfigError, match="images must be"):
        fmbench.predict(fmbench.create_model("cnn_seed"), torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="unknown setting 'nonsense'"):
        fmbench.train("cnn_seed", out=tmp_path / "r", nonsense=1)


def test_predict_takes_uint8_float_and_paths(tmp_path):
    from PIL import Image

    model = fmbench.create_model("cnn_seed", pretrained=True)
    images = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8)
    a = fmbench.predict(model, images)
    b = fmbench.predict(model, images[:, None].float() / 255)
    Image.fromarray(images[0].numpy()).save(tmp_path / "x.png")
    c = fmbench.predict(model, tmp_path / "x.png")
    assert [p["class"] for p in a] == [p["class"] for p in b] and len(c) == 1 and len(a[0]["top"]) == 3


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom_on_a_tiny_budget(real_data_dir, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    monkeypatch.setenv("FMBENCH_DATA_DIR", str(real_data_dir))
    monkeypatch.setenv("FMBENCH_NOTEBOOK_BUDGET", "tiny")
    monkeypatch.setenv("FMBENCH_NOTEBOOK_OUT", str(tmp_path / "runs"))
    nb = nbformat.read(ROOT / "examples" / "study.ipynb", as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "cnn_best: test accuracy 0.95" in text and "report.html" in text


# ----------------------------------------------------------------- explain_images, explain_run, export_onnx

def test_explain_images_gives_each_image_its_prediction_and_map():
    from helpers_engine import tiny_dataset

    data = tiny_dataset()
    cnn = fmbench.create_model("cnn_seed", pretrained=True)
    rows = fmbench.explain_images(cnn, data.test_images[:3], faithfulness=True, data=data)
    assert [set(r) for r in rows] == [{"class", "index", "probability", "model", "method", "saliency",
                                       "faithfulness"}] * 3
    assert rows[0]["model"] == "cnn_seed" and rows[0]["method"] == "gradcam"
    predicted = fmbench.predict(cnn, data.test_images[:3], top=1)
    assert [(r["class"], r["index"]) for r in rows] == [(p["class"], p["index"]) for p in predicted]
    assert rows[0]["saliency"].shape == (28, 28) and 0 <= float(rows[0]["saliency"].min()) <= 1
    assert rows[0]["faithfulness"]["deletion"]["n"] == 20                  # the tiny test set's 20 images
    vit = fmbench.create_model("vit_seed", depth=2)                          # a fresh module: its class says which
    (row,) = fmbench.explain_images(vit, data.test_images[:1, None].float() / 255, method="attention")
    assert row["model"] == "vit_seed" and row["heads"].shape == (8, 28, 28) and "faithfulness" not in row


def test_explain_images_refuses_what_it_cannot_explain():
    images = torch.zeros(1, 28, 28, dtype=torch.uint8)
    with pytest.raises(ConfigError, match="method rollout explains ViTs and hybrids, but cnn_seed is a CNN"):
        fmbench.explain_images(fmbench.create_model("cnn_seed"), images, method="rollout")
    with pytest.raises(ConfigError, match="Sequential is not a registered model"):
        fmbench.explain_images(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), images)


def test_explain_run_records_a_run_that_lacks_its_explanation(tmp_path, monkeypatch):
    from helpers_engine import stub_speed, tiny_dataset, train_tiny

    from fmbench import rundir as R

    stub_speed(monkeypatch)
    run_dir = train_tiny(tmp_path / "run")
    for name in (R.EXPLAIN, R.MAPS):
        (run_dir / name).unlink()
    record = fmbench.explain_run(fmbench.load_run(run_dir), tiny_dataset(), device="cpu", quiet=True)
    assert record["method"] == "gradcam" and record["deletion"]["n"] == 20
    assert record["sample_maps"].shape == (6, 28, 28) and record["class_means"].shape == (10, 28, 28)
    assert R.read_explanation(run_dir)[0] == {k: record[k] for k in R.EXPLAIN_KEYS}
    with pytest.raises(RunDirError, match="not a complete run"):
        fmbench.explain_run(tmp_path / "empty", tiny_dataset(), quiet=True)


def test_export_onnx_writes_a_card_that_names_its_source(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency (pip install -e '.[test]')")
    from helpers_engine import stub_speed, tiny_dataset, train_tiny

    from fmbench.weights import read_card

    data = tiny_dataset()
    card = fmbench.export_onnx(fmbench.create_model("cnn_seed", pretrained=True), tmp_path / "cnn.onnx", data=data)
    assert card["model"] == "cnn_seed" and card["check"]["top1_agreement"] == 1.0
    assert card["source"] == {"weights": "cnn_seed", "sha256": read_card("cnn_seed")["sha256"]}
    assert (tmp_path / "cnn.json").is_file()
    stub_speed(monkeypatch)
    run = fmbench.load_run(train_tiny(tmp_path / "run", "vit_seed", data))
    card = fmbench.export_onnx(run, tmp_path / "vit.onnx", opset=18, data=data)
    assert card["opset"] == 18 and card["source"]["run_dir"] == str(run.path)
    assert card["source"]["config_hash"] == run.config.hash and len(card["source"]["sha256"]) == 64
    with pytest.raises(ConfigError, match="must end in .onnx"):
        fmbench.export_onnx(tmp_path / "no-such-run", tmp_path / "x.txt")         # checked before anything loads


def test_explain_and_export_commands_call_the_api(run_cli, tiny_idx_dir, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency (pip install -e '.[test]')")
    from fmbench import api

    calls = []
    for name in ("explain_images", "export_onnx"):
        real = getattr(api, name)
        monkeypatch.setattr(api, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    data = ["--data-dir", tiny_idx_dir, "--no-verify", "--no-download"]
    assert run_cli("explain", "--weights", "cnn_seed", "test:0", "--json", *data)[0] == 0
    assert run_cli("export", "--weights", "cnn_seed", "--onnx", tmp_path / "m.onnx", *data)[0] == 0
    assert calls == ["explain_images", "export_onnx"]
