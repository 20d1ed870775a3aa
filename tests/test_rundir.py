"""The run-directory format has one owner (fmbench.rundir) and docs/design.md describes it exactly."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from fmbench import rundir as R
from fmbench.errors import RunDirError

DESIGN = Path(__file__).resolve().parents[1] / "docs" / "design.md"


def _design_files() -> dict[str, str]:
    """{file name: its description} from the layout blocks of design.md's run-directory section."""
    text = DESIGN.read_text()
    section = text[text.index("## Run directory"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    out: dict[str, str] = {}
    name = None
    for block in blocks:
        for line in block.splitlines():
            m = re.match(r"  (\S+)\s{2,}(.*)", line)
            if m and not line.startswith("   "):
                name = m.group(1).rstrip("/")   # a folder: "tb/"
                out[name] = m.group(2)
            elif name is not None:
                out[name] += " " + line.strip()
    return out


def _quoted(text: str) -> set[str]:
    return set(re.findall(r'"(\w+)"', text))


def test_design_lists_exactly_the_run_files():
    documented = _design_files()
    assert set(documented) == {*R.FILES, R.LOCK, "NAME.json"}


def test_design_states_the_format_version():
    text = DESIGN.read_text()
    assert f"`FORMAT_VERSION = {R.FORMAT_VERSION}`" in text
    assert f'"format_version": {R.FORMAT_VERSION}' in _design_files()[R.CONFIG]
    assert f'"card_version": {R.CARD_VERSION}' in _design_files()["NAME.json"]


@pytest.mark.parametrize("file, keys", [
    (R.CONFIG, (*R.CONFIG_KEYS, *R.DATA_KEYS)),
    (R.METRICS, R.EPOCH_KEYS),
    (R.EVAL, ("best_epoch", "splits", *R.SPLIT_KEYS, *R.CLASS_KEYS)),
    (R.SUMMARY, tuple(f.name for f in fields(R.Summary))),
    ("NAME.json", R.CARD_KEYS),
    (R.EXPLAIN, R.EXPLAIN_KEYS),
])
def test_design_names_every_field_of_each_record(file, keys):
    documented = _quoted(_design_files()[file])
    assert set(keys) <= documented, f"{file}: design.md lacks {sorted(set(keys) - documented)}"
    extra = documented - set(keys) - {"format_version", "card_version", "name", "key", "classes", "train",
                                      "val", "test", "fashion", "idx", "fast", "cnn_seed", "complete",
                                      "gradcam", "rollout", "n", "fractions", "saliency_curve", "random_curve",
                                      "saliency_auc", "random_auc", "constant_maps", "spearman_mean",
                                      "spearman_abs_mean", "cnn", "vit", "hybrid", "study", "strong", "cpu",
                                          "cuda", "mps"}
    assert not extra, f"{file}: design.md names fields rundir does not write: {sorted(extra)}"


def test_records_have_exactly_the_documented_keys(tmp_path):
    split = {"loss": 0.5, "accuracy": 0.8, "f1_weighted": 0.79}
    assert tuple(R.epoch_record(1, {"loss": 1.0, "accuracy": 0.5, "f1": 0.4}, split, 1e-3, 2.0, 10.0)) == R.EPOCH_KEYS
    rec = R.config_record(fmbench_version="x", model="m", family="cnn", tier="study", preset="p", overrides={},
                          model_config={}, train_config={}, config_hash="h", device="cpu", data=None)
    assert tuple(rec) == R.CONFIG_KEYS
    with pytest.raises(ValueError, match="card lacks"):
        R.card_record(name="x")


def test_written_records_read_back(tmp_path):
    R.write_epochs(tmp_path, [])
    split = {"loss": 0.5, "accuracy": 0.8, "f1_weighted": 0.79}
    for e in (1, 2, 3):
        R.append_epoch(tmp_path, R.epoch_record(e, {"loss": 1.0, "accuracy": 0.5, "f1": 0.4}, split, 1e-3, 2.0, 10.0))
    R.keep_epochs(tmp_path, 2)
    assert [r["epoch"] for r in R.read_epochs(tmp_path)] == [1, 2]
    R.write_outputs(tmp_path, torch.full((4, 10), 0.1), torch.arange(4))
    probs, labels = R.read_outputs(tmp_path)
    assert probs.shape == (4, 10) and labels.tolist() == [0, 1, 2, 3]
    assert not R.is_complete(tmp_path)
    summary = R.Summary(model="m", preset="p", config_hash="h", params=1, flops_per_image=1.0, train_time_s=1.0,
                        epochs_run=1, best_epoch=1, stopped_early=False, train_images_per_s=1.0,
                        infer_images_per_s=1.0, latency_ms=1.0, device="cpu", precision="fp32", test_hash="t",
                        test_accuracy=0.5, test_f1_weighted=0.5)
    R.write_summary(tmp_path, summary)
    assert R.is_complete(tmp_path) and R.read_summary(tmp_path)["status"] == "complete"
    R.mark_unfinished(tmp_path)
    with pytest.raises(RunDirError, match="summary.json: file is missing"):
        R.read_summary(tmp_path)


def test_a_config_from_another_format_version_is_refused(tmp_path):
    R.write_config(tmp_path, {**R.config_record(fmbench_version="x", model="m", family="cnn", tier="study",
                                                preset="p", overrides={}, model_config={}, train_config={},
                                                config_hash="h", device="cpu", data=None),
                              "format_version": R.FORMAT_VERSION + 1})
    with pytest.raises(RunDirError, match=f"config.json: format version {R.FORMAT_VERSION + 1}"):
        R.read_config(tmp_path)


def test_no_module_but_rundir_spells_the_file_names():
    """The run directory's file names appear as string literals only in rundir.py."""
    src = Path(R.__file__).resolve().parent
    names = [n for n in R.FILES]
    offenders = []
    for path in src.rglob("*.py"):
        if path.name == "rundir.py":
            continue
        for n in names:
            if re.search(rf'(["\']){re.escape(n)}\1', path.read_text()):
                offenders.append(f"{path.relative_to(src)}: {n}")
    assert not offenders, offenders
