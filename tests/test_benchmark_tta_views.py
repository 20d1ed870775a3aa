"""benchmarks/tta_views.py: the test-time views, their accuracies on shipped weights, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)


@pytest.fixture(scope="module")
def tv(benchmark_script):
    return benchmark_script("tta_views")


def test_shifts_move_the_image_one_pixel_each_way_with_reflected_edges(tv) -> None:
    x = torch.zeros(1, 1, 7, 7)
    x[0, 0, 3, 2] = 1.0
    down_right, up_left = tv.shifted(x)
    assert down_right[0, 0, 4, 3] == 1 and down_right.sum() == 1
    assert up_left[0, 0, 2, 1] == 1 and up_left.sum() == 1
    edge = torch.arange(25.0).reshape(1, 1, 5, 5)
    assert torch.equal(tv.shifted(edge)[0][0, 0, 0, 1:], edge[0, 0, 1, :4])   # the top row reflects row 1


def test_views_weight_the_image_half_and_the_shifts_a_quarter(tv) -> None:
    x = torch.rand(3, 1, 6, 6)
    net = lambda v: v[:, 0, :, :2].sum((1, 2)).unsqueeze(1)   # noqa: E731  (sees only the left columns)
    a, b = tv.shifted(x)
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
