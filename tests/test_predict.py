"""Image files -> model input (`fmbench.imagefiles`) and `fmbench predict`: sizes, modes, formats,
inversion of light backgrounds, and one clear line for every unreadable file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)
from helpers_engine import stub_speed, train_tiny
from PIL import Image

from fmbench import CLASSES
from fmbench.engine.loop import predict_logits
from fmbench.errors import FmbenchError
from fmbench.imagefiles import load_image, load_images
from fmbench.runs import load_model


def garment(size: tuple[int, int] = (60, 80), light_background: bool = False) -> np.ndarray:
    """A grey-level (H, W) uint8 picture: a filled rectangle in the middle half of the frame."""
    w, h = size
    bg, fg = (245, 30) if light_background else (0, 220)
    a = np.full((h, w), bg, np.uint8)
    a[h // 4: h - h // 4, w // 4: w - w // 4] = fg
    return a


def save(path: Path, a: np.ndarray, mode: str, **kwargs) -> Path:
    """Save a grey-level array as an image of `mode` (the format follows the suffix)."""
    im = Image.fromarray(a, "L")
    if mode == "RGBA":  # transparent background, opaque garment
        im = Image.merge("RGBA", (im, im, im, Image.fromarray(np.where(a == a[0, 0], 0, 255).astype(np.uint8))))
    elif mode == "LA":
        im = Image.merge("LA", (im, Image.fromarray(np.where(a == a[0, 0], 0, 255).astype(np.uint8))))
    elif mode == "P":
        im = im.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    elif mode != "L":
        im = im.convert(mode)
    im.save(path, **kwargs)
    return path


def check(t: torch.Tensor) -> None:
    assert isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.shape == (28, 28)


def light_on_black(t: torch.Tensor) -> None:
    """Fashion-MNIST style: dark border, bright garment in the middle."""
    check(t)
    border = torch.cat([t[0], t[-1], t[:, 0], t[:, -1]]).float()
    assert border.mean() < 20, t
    assert t[12:16, 12:16].float().mean() > 150, t


# ---------------------------------------------------------------- sizes, modes, formats

@pytest.mark.parametrize("suffix, mode", [
    (".png", "L"), (".png", "RGB"), (".png", "P"), (".png", "1"),
    (".jpg", "L"), (".jpg", "RGB"), (".jpg", "CMYK"), (".jpeg", "RGB"),
])
@pytest.mark.parametrize("light", [False, True], ids=["dark-background", "light-background"])
def test_modes_and_formats_give_light_garments_on_black(tmp_path, suffix, mode, light):
    path = save(tmp_path / f"g{suffix}", garment(light_background=light), mode)
    light_on_black(load_image(path))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_background_counts_as_white_and_is_inverted(tmp_path, mode):
    """As Fashion-MNIST was made (product photos on white, inverted): transparency is white, so a
    dark garment becomes bright and a white one faint, both on black."""
    a = garment()           # background 0 is made fully transparent; the garment is opaque
    a[a > 0] = 40           # a dark garment
    light_on_black(load_image(save(tmp_path / "dark.png", a, mode)))
    a[a > 0] = 220          # a light garment: faint, but there
    t = load_image(save(tmp_path / "light.png", a, mode))
    check(t)
    assert t[0].max() == 0 and 20 < t[14, 14] < 60


@pytest.mark.parametrize("size", [(28, 28), (1, 1), (3, 2), (100, 60), (1000, 10), (10, 1000), (2000, 1500)])
def test_any_size_gives_28x28(tmp_path, size):
    check(load_image(save(tmp_path / "s.png", garment(size), "L")))


def test_aspect_ratio_is_kept_and_the_image_centred(tmp_path):
    a = np.full((20, 200), 255, np.uint8)        # a very wide, all-bright strip on nothing
    a[0], a[-1], a[:, 0], a[:, -1] = 0, 0, 0, 0  # dark border: not inverted
    t = load_image(save(tmp_path / "wide.png", a, "L"))
    check(t)
    rows = (t > 0).any(1).nonzero().flatten().tolist()
    assert 1 <= len(rows) <= 4 and 12 <= rows[0] <= rows[-1] <= 15, t  # 200x20 -> 28x3, centred
    assert (t > 0).any(0).sum() >= 26                                  # the full width is used


def test_exif_orientation_is_applied(tmp_path):
    a = np.full((20, 60), 200, np.uint8)   # stored wide ...
    a[:2], a[-2:], a[:, :2], a[:, -2:] = 0, 0, 0, 0
    exif = Image.Exif()
    exif[0x0112] = 6                        # ... displayed rotated by 90 degrees: tall
    path = tmp_path / "rotated.jpg"
    Image.fromarray(a, "L").save(path, exif=exif)
    t = load_image(path)
    assert (t > 100).any(0).sum() < 14 and (t > 100).any(1).sum() > 20  # tall: narrow and high


def test_load_images_stacks(tmp_path):
    paths = [save(tmp_path / f"{i}.png", garment((30 + 10 * i, 40)), "L") for i in range(3)]
    x = load_images(paths)
    assert x.shape == (3, 28, 28) and x.dtype == torch.uint8
    assert torch.equal(x[1], load_image(paths[1]))


def test_16_bit_png_keeps_its_contrast(tmp_path):
    a = np.full((56, 56), 60000, np.uint16)   # light background
    a[14:42, 14:42] = 10000                   # dark garment
    path = tmp_path / "16bit.png"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode.startswith("I")
    light_on_black(load_image(path))


# ---------------------------------------------------------------- unreadable files

def _bad_files(tmp_path: Path) -> dict[str, Path]:
    tmp_path.mkdir(exist_ok=True)
    good = save(tmp_path / "good.png", garment((64, 64)), "RGB").read_bytes()
    jpeg = save(tmp_path / "good.jpg", garment((64, 64)), "RGB").read_bytes()
    files = {
        "text named .png": ("notes.png", b"this is not an image\n"),
        "empty file": ("empty.png", b""),
        "truncated PNG": ("cut.png", good[: len(good) // 2]),
        "PNG header only": ("head.png", good[:40]),
        "truncated JPEG": ("cut.jpg", jpeg[: len(jpeg) // 2]),
    }
    out = {}
    for kind, (name, data) in files.items():
        (tmp_path / name).write_bytes(data)
        out[kind] = tmp_path / name
    out["directory"] = tmp_path
    return out


BAD = ["text named .png", "empty file", "truncated PNG", "PNG header only", "truncated JPEG", "directory"]


@pytest.mark.parametrize("kind", BAD)
def test_unreadable_file_is_one_clear_error(tmp_path, kind):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(FmbenchError) as e:
        load_image(path)
    assert str(e.value).startswith(f"{path}: not a readable image") and "\n" not in str(e.value)


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(FmbenchError, match=r"nope\.png: no such file$"):
        load_image(tmp_path / "nope.png")


# ---------------------------------------------------------------- fmbench predict

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A cnn_seed run trained for one epoch on tiny random data (predictions are arbitrary)."""
    before = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        stub_speed(mp)
        run = train_tiny(tmp_path_factory.mktemp("predict") / "run", "cnn_seed", epochs=1)
    torch.set_num_threads(before)
    return run


def test_predict_json(run_dir, run_cli, tmp_path):
    a = save(tmp_path / "a.png", garment(), "RGBA")
    b = save(tmp_path / "b.jpg", garment((300, 200), light_background=True), "RGB")
    code, out, err = run_cli("predict", run_dir, a, b, "--json", "--top", "3", "--device", "cpu")
    assert code == 0, err
    r = json.loads(out)
    assert r["model"] == "cnn_seed" and [p["image"] for p in r["predictions"]] == [str(a), str(b)]
    model, rc = load_model(run_dir)
    probs = predict_logits(model, load_images([a, b]), 8, "fp32").softmax(1)
    for n, p in enumerate(r["predictions"]):
        top = p["top"]
        assert len(top) == 3 and all(t["class"] == CLASSES[t["index"]] for t in top)
        assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)
        assert top[0]["index"] == int(probs[n].argmax())
        assert top[0]["probability"] == pytest.approx(float(probs[n].max()), abs=1e-3)


def test_predict_text(run_dir, run_cli, tmp_path):
    a = save(tmp_path / "a.png", garment(), "L")
    code, out, err = run_cli("predict", run_dir, a, "--top", "2", "--device", "cpu")
    assert code == 0, err
    assert out.startswith(f"{a}: ") and out.count("%") == 2 and out.count("\n") == 1


@pytest.mark.parametrize("kind", BAD + ["missing"])
def test_predict_bad_image_is_exit_2_naming_the_file(run_dir, run_cli, tmp_path, kind):
    good = save(tmp_path / "ok.png", garment(), "L")
    bad = tmp_path / "missing.png" if kind == "missing" else _bad_files(tmp_path / "bad")[kind]
    code, out, err = run_cli("predict", run_dir, good, bad, "--device", "cpu")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"fmbench: error: {bad}: ") and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["IMG", "--top", "11"], "--top must be between 1 and 10, got 11"),
    ([], "no IMAGE given"),
])
def test_predict_option_errors(run_dir, run_cli, tmp_path, argv, message):
    img = save(tmp_path / "a.png", garment(), "L")
    code, _, err = run_cli("predict", run_dir, *[img if a == "IMG" else a for a in argv])
    assert code == 2 and err.count("\n") == 1 and message in err


def test_predict_accepts_options_before_the_images(run_dir, run_cli, tmp_path):
    img = save(tmp_path / "a.png", garment(), "L")
    code, out, err = run_cli("predict", run_dir, "--top", "2", img, "--device", "cpu")
    assert code == 0, err
    assert out.startswith(f"{img}: ")


def test_predict_with_a_missing_run_dir(run_cli, tmp_path):
    img = save(tmp_path / "a.png", garment(), "L")
    code, _, err = run_cli("predict", tmp_path / "nope", img, "--device", "cpu")
    assert code == 2 and err == f"fmbench: error: {tmp_path / 'nope'}: run directory does not exist\n"
