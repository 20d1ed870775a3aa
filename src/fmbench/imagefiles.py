"""Image files -> model input: grayscale, 28x28 keeping the aspect ratio, light-on-dark like Fashion-MNIST."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fmbench.errors import FmbenchError


def _to_8bit_gray(im):
    """Grayscale uint8 of any PIL mode; 16/32-bit and float images are rescaled, not clipped."""
    from PIL import Image

    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.round().astype(np.uint8), mode="L")
    return im.convert("L")


class ImageTooLarge(FmbenchError):
    """An image over the pixel limit (a decompression bomb, or simply too big to be a garment photo)."""


def load_image(source: str | Path | bytes, size: int = 28, max_pixels: int | None = None,
               name: str | None = None) -> torch.Tensor:
    """A PNG/JPEG (a path or its bytes; any size or mode) as a uint8 (size, size) tensor, garment light on black.

    The image is converted to grayscale, scaled so that its longer side fits `size` (aspect ratio
    kept), centred on a square canvas of the background colour, and inverted when its background
    (the border pixels) is light, since Fashion-MNIST shows light garments on black. With
    `max_pixels`, an image whose header declares more pixels is refused before it is decoded.
    """
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    path = source if isinstance(source, bytes) else Path(source)
    what = name or ("the image" if isinstance(source, bytes) else str(path))
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else path) as im:
            if max_pixels is not None and im.size[0] * im.size[1] > max_pixels:
                raise ImageTooLarge(f"{what}: {im.size[0]}x{im.size[1]} pixels is over the limit of {max_pixels:,}")
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))  # transparency -> white
                im = Image.alpha_composite(canvas, im)
            gray = _to_8bit_gray(im)
    except FileNotFoundError:
        raise FmbenchError(f"{what}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise FmbenchError(f"{what}: not a readable image ({type(e).__name__})") from None
    a = np.asarray(gray, dtype=np.uint8)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if border.mean() > 127:
        gray = ImageOps.invert(gray)
    w, h = gray.size
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    gray = gray.resize(new, Image.Resampling.LANCZOS)
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(gray, ((size - new[0]) // 2, (size - new[1]) // 2))
    return torch.from_numpy(np.array(canvas, dtype=np.uint8))


def load_images(paths: list[str | Path]) -> torch.Tensor:
    """uint8 (N, 28, 28) for a list of image files; the first bad file raises FmbenchError."""
    return torch.stack([load_image(p) for p in paths])


TEST_PREFIX = "test:"     # `test:409` names an image of the test set (fmbench explain)


def test_index(spec: str) -> int | None:
    """The INDEX of a `test:INDEX` image spec, None for a file name; a malformed one is a ConfigError."""
    from fmbench.errors import ConfigError

    if not spec.startswith(TEST_PREFIX):
        return None
    try:
        return int(spec[len(TEST_PREFIX):])
    except ValueError:
        raise ConfigError(f"{spec}: test:INDEX needs a whole number") from None


def load_specs(specs: list[str], test_images: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (N, 28, 28) for image files and `test:INDEX` specs (images of `test_images`), in order."""
    from fmbench.errors import ConfigError

    out = []
    for spec in specs:
        i = test_index(spec)
        if i is None:
            out.append(load_image(spec))
            continue
        n = 0 if test_images is None else len(test_images)
        if not 0 <= i < n:
            raise ConfigError(f"{spec}: index out of range (the test set has {n} images, 0 to {n - 1})")
        out.append(test_images[i])
    return torch.stack(out)
