"""benchmarks/tta_views.py: the test-time views, their accuracies on shipped weights, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)


@pytest.fixture(scope="module")
def tv(benchmark_script):
    return benchmark_script("tta_views")


def test_views_weight_the_image_half_and_the_shifts_a_quarter(tv) -> None:
    x = torch.rand(3, 1, 6, 6)
    net = lambda v: v[:, 0, :, :2].sum((1, 2)).unsqueeze(1)   # noqa: E731  (sees only the left columns)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    a, b = padded[..., :6, :6], padded[..., 2:, 2:]              # one pixel down-right, one up-left
    torch.testing.assert_close(tv.view_logits(net, x, "plain"), net(x))
    torch.testing.assert_close(tv.view_logits(net, x, "mirror"), (net(x) + net(x.flip(-1))) / 2)
    torch.testing.assert_close(tv.view_logits(net, x, "translate"), net(x) / 2 + (net(a) + net(b)) / 4)
    m = lambda v: (net(v) + net(v.flip(-1))) / 2   # noqa: E731
    torch.testing.assert_close(tv.view_logits(net, x, "mirror_translate"), m(x) / 2 + (m(a) + m(b)) / 4)


def test_shipped_weights_are_scored_under_every_view(tv, make_tiny_idx, tmp_path: Path, capsys) -> None:
    data_dir = make_tiny_idx(tmp_path / "tiny", n_train=20, n_test=30)
    out = tmp_path / "views.json"
    assert tv.main(["cnn_seed", "vit_best", "--data-dir", str(data_dir), "--no-verify", "--json", str(out)]) == 0
    result = json.loads(out.read_text())["test_accuracy"]
    for name in ("cnn_seed", "vit_best"):    # a network without test-time flips, and one with them
        assert list(result[name]) == list(tv.VIEWS) and all(0 <= a <= 1 for a in result[name].values())
    assert "vit_best" in capsys.readouterr().out


def test_an_unknown_model_is_one_line_and_exit_2(tv, tmp_path: Path, capsys) -> None:
    assert tv.main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tta_views: ") and "neither a shipped weights name" in err and err.count("\n") == 1
