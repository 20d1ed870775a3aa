"""`fmbench data`: help, the summary it prints, the example grid, errors as one line."""

from __future__ import annotations

from PIL import Image

from fmbench import CLASSES


def test_help_has_an_example(run_cli):
    code, out, _ = run_cli("data", "--help")
    assert code == 0
    assert "examples:" in out and "fmbench data --data-dir" in out
    for option in ("--data-dir", "--mirror", "--no-download", "--no-verify", "--cache-dir", "--grid"):
        assert option in out


def test_no_verify_on_synthetic_data_prints_source_and_counts(tiny_idx_dir, run_cli):
    code, out, err = run_cli("data", "--data-dir", tiny_idx_dir, "--no-verify", "--no-download")
    assert code == 0, err
    assert f"source:   explicit directory {tiny_idx_dir}\n" in out
    assert "sha256:   not checked (--no-verify)" in out
    for c, name in enumerate(CLASSES):  # 40 train and 20 test images, classes balanced
        assert f"{c} {name:<11}        4        2\n" in out
    assert "total             40       20" in out
    assert "error" not in err


def test_grid_is_written(tiny_idx_dir, tmp_path, run_cli):
    target = tmp_path / "figs" / "grid.png"
    code, out, err = run_cli("data", "--data-dir", tiny_idx_dir, "--no-verify", "--grid", target)
    assert code == 0, err
    assert f"grid:     {target}" in out
    with Image.open(target) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 300
    assert [p.name for p in target.parent.iterdir()] == ["grid.png"]  # no temporary file left


def test_grid_with_unknown_format_is_a_user_error(tiny_idx_dir, tmp_path, run_cli):
    code, _, err = run_cli("data", "--data-dir", tiny_idx_dir, "--no-verify", "--grid", tmp_path / "g.txt")
    assert code == 2 and err == f"fmbench: error: {tmp_path / 'g.txt'}: cannot write a .txt figure (use .png, .pdf or .svg)\n"
    assert not (tmp_path / "g.txt").exists()


def test_real_data_summary(real_data_dir, real_dataset, run_cli):
    code, out, _ = run_cli("data", "--data-dir", real_data_dir, "--no-download")
    assert code == 0
    assert f"source:   explicit directory {real_data_dir}\n" in out
    assert "sha256:   verified against the published Fashion-MNIST hashes" in out
    assert f"test set: {real_dataset.test_hash[:16]}" in out
    assert out.count("6,000    1,000\n") == 10
    assert "total         60,000   10,000" in out


def test_unknown_option_is_one_line(run_cli):
    code, out, err = run_cli("data", "--no-such-option")
    assert code == 2 and out == "" and err.count("\n") == 1 and "unrecognized arguments" in err
