"""`fmbench compare`, run in-process on synthetic run directories."""

import types

import pytest
from report_fixtures import fake_images, write_run

import fmbench
from fmbench.cli import main
from fmbench.errors import DataError


def test_compare_writes_the_report(tmp_path, capsys):
    a = write_run(tmp_path, "cnn_seed", n=60, accuracy=0.9)
    b = write_run(tmp_path, "vit_seed", n=60, accuracy=0.8)
    out = tmp_path / "report"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    assert str(out / "report.html") in capsys.readouterr().out
    md = (out / "report.md").read_text()
    assert "## 8. Is the difference real?" in md
    assert "Example images omitted: the runs were evaluated on 60 test images" in md
    assert f"`fmbench compare {a} {b} --out {out}`" in md          # provenance: the command
    assert "<img src=\"data:image/png;base64," in (out / "report.html").read_text()


def test_compare_no_images_flag(tmp_path):
    a = write_run(tmp_path, "cnn_seed", n=60)
    assert main(["compare", str(a), "--out", str(tmp_path / "r"), "--no-images"]) == 0
    assert "Example images omitted: no test images were asked for (--no-images)" in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.parametrize("make_bad, needle", [
    (lambda root: root / "does-not-exist", "not a directory"),
    (lambda root: _without(write_run(root, "cnn_seed", n=60), "summary.json"), "summary.json"),
])
def test_compare_bad_dir_is_a_one_line_error(tmp_path, capsys, make_bad, needle):
    bad = make_bad(tmp_path)
    assert main(["compare", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fmbench: error: ") and needle in err
    assert err.count("\n") == 1
    assert not (tmp_path / "r" / "report.html").exists()


def test_compare_refuses_other_test_data(tmp_path, capsys):
    a = write_run(tmp_path, "cnn_seed", n=60)
    b = write_run(tmp_path, "vit_seed", n=60, test_hash="other")
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "r")]) == 2
    assert "different test data" in capsys.readouterr().err


def test_compare_help_has_an_example(capsys):
    assert main(["compare", "--help"]) == 0
    out = capsys.readouterr().out
    assert "example" in out and "fmbench compare runs/" in out


def _without(d, name):
    (d / name).unlink()
    return d


def _fake_loader(images, test_hash, fail=False):
    def load_fashion_mnist(data_dir=None, *, download=True, log=print, **_):
        if fail:
            raise DataError("Fashion-MNIST not found and downloads are off")
        return types.SimpleNamespace(test_images=images, test_hash=test_hash, source="fake")
    return load_fashion_mnist


@pytest.fixture
def full_size_run(tmp_path):
    """A run on 10,000 test images: the CLI then tries to load the real test set."""
    return write_run(tmp_path, "cnn_seed", n=10_000, test_hash="real-hash")


def _patch_data(monkeypatch, loader):
    import fmbench.data  # noqa: F401  (a namespace package until fmbench/data/__init__.py exists)

    monkeypatch.setattr(fmbench.data, "load_fashion_mnist", loader, raising=False)


def test_compare_loads_real_test_images_for_full_test_set(tmp_path, monkeypatch, full_size_run):
    _patch_data(monkeypatch, _fake_loader(fake_images(10_000), "real-hash"))
    assert main(["compare", str(full_size_run), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "figures" / "sample_predictions.png").exists()
    assert "omitted" not in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.parametrize("loader, note", [
    (_fake_loader(None, "", fail=True), "could not be loaded (Fashion-MNIST not found"),
    (_fake_loader(fake_images(10_000), "some-other-hash"), "are not the ones the runs were evaluated on"),
])
def test_compare_omits_images_when_data_unusable(tmp_path, monkeypatch, full_size_run, loader, note):
    _patch_data(monkeypatch, loader)
    assert main(["compare", str(full_size_run), "--out", str(tmp_path / "r"), "--no-download"]) == 0
    assert note in (tmp_path / "r" / "report.md").read_text()
