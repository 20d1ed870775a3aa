"""`fmbench serve`: a local page to try several models side by side, and the JSON API behind it.

    GET  /               the page (page.html: one file, no external fonts, scripts or styles)
    GET  /api/models     the loaded models with their cards
    GET  /api/samples    random test images to click (when the data set was found)
    POST /api/predict    multipart field `file` (an image) -> each model's top 5, time and saliency map

Models load once, at start; requests run under `torch.inference_mode` (saliency needs gradients
for Grad-CAM and runs outside it) and may be served concurrently: the models are only read.
Bad input gets a 4xx JSON `{"error": "..."}` and the server keeps serving.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request, UploadFile      # module level: FastAPI reads the annotations
from fastapi.responses import HTMLResponse, JSONResponse

MAX_BYTES = 5 * 1024 * 1024          # an upload over 5 MB is refused (413)
MAX_PIXELS = 4096 * 4096             # an image header declaring more pixels is refused before decoding (413)
IMAGE_TYPES = ("image/", "application/octet-stream")
PAGE = Path(__file__).with_name("page.html")


@dataclass(frozen=True)
class Served:
    """One loaded model: its display name, module, registry name, family, precision and card."""

    name: str
    model: torch.nn.Module
    model_name: str
    family: str
    precision: str
    card: dict[str, Any]


def load_served(run_dirs: list[Path], names: list[str], device: torch.device,
                precision: str | None = None) -> list[Served]:
    """`Served` models from run directories (the weights each recipe keeps, labelled "MODEL (DIR)") and
    shipped weights (by name or path, with their cards), in that order; `precision` default: each one's own."""
    from fmbench.models import get_spec
    from fmbench.runs import load_models
    from fmbench.runtime import choose_precision
    from fmbench.weights import read_card

    loaded = []
    for src, model, rc in load_models(list(run_dirs), list(names), device):
        if isinstance(src, Path):
            loaded.append((f"{rc.model} ({src.name})", model, rc, {"run_dir": str(src), "preset": rc.preset,
                                                                     "config_hash": rc.hash}))
        else:
            card = read_card(src)
            loaded.append((src, model, rc, {k: card.get(k) for k in ("name", "model", "sha256", "params", "epochs",
                                                                     "test")}))
    return [Served(label, model, rc.model, get_spec(rc.model).family,
                   choose_precision(precision or rc.train_cfg.precision, device), about)
            for label, model, rc, about in loaded]


def predict_one(s: Served, image: torch.Tensor, classes: list[str], top: int = 5) -> dict[str, Any]:
    """Top classes, milliseconds and saliency map of one uint8 (28, 28) image for one model."""
    from fmbench.engine.loop import predict_logits
    from fmbench.explain import saliency

    t0 = time.perf_counter()
    probs = predict_logits(s.model, image[None], 1, s.precision).softmax(1)[0]
    ms = (time.perf_counter() - t0) * 1000
    p, i = probs.topk(top)
    sal = saliency(s.model, s.family, image[None])[0]
    return {"name": s.name, "top": [{"class": classes[int(k)], "probability": round(float(v), 5)} for v, k in zip(p, i)],
            "ms": round(ms, 2), "saliency": [[round(float(v), 3) for v in row] for row in sal]}


def create_app(served: list[Served], classes: list[str],
               samples: tuple[torch.Tensor, torch.Tensor] | None = None) -> FastAPI:
    """The FastAPI application serving `served` models."""
    from fmbench.errors import FmbenchError
    from fmbench.imagefiles import ImageTooLarge, load_image

    app = FastAPI(title="fmbench", docs_url=None, redoc_url=None, openapi_url=None)
    page = PAGE.read_text(encoding="utf-8")

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/models")
    def models() -> dict[str, Any]:
        return {"models": [{"name": s.name, "model": s.model_name, "family": s.family, "card": s.card} for s in served],
                "classes": classes}

    @app.get("/api/samples")
    def sample_images(n: int = 8) -> Any:
        if samples is None:
            return error(404, "no test images: the data set was not found when the server started")
        n = max(1, min(n, 32))
        idx = torch.randint(0, len(samples[1]), (n,))
        return {"samples": [{"index": int(i), "label": classes[int(samples[1][i])], "pixels": samples[0][i].tolist()}
                            for i in idx]}

    @app.post("/api/predict")
    async def predict(request: Request) -> Any:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            return error(415, f"send the image as multipart/form-data field 'file', not {ctype or 'no content type'}")
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_BYTES + 4096:
            return error(413, f"the upload is {length:,} bytes; the limit is {MAX_BYTES:,}")
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile) and not hasattr(upload, "read"):
            return error(400, "no multipart field 'file' with an image")
        if upload.content_type and not upload.content_type.startswith(IMAGE_TYPES):
            return error(415, f"'file' is {upload.content_type}, not an image")
        data = await upload.read(MAX_BYTES + 1)
        if not data:
            return error(400, "the image is empty (0 bytes)")
        if len(data) > MAX_BYTES:
            return error(413, f"the image is over the limit of {MAX_BYTES:,} bytes")
        try:
            image = load_image(data, max_pixels=MAX_PIXELS, name=upload.filename or "the image")
        except ImageTooLarge as e:
            return error(413, str(e))
        except FmbenchError as e:
            return error(400, str(e))
        import anyio

        results = await anyio.to_thread.run_sync(lambda: [predict_one(s, image, classes) for s in served])
        return {"models": results, "input_28x28": image.tolist()}

    return app
