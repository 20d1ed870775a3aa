"""The local page's JSON API with a test client: good images, each bad input, concurrent requests."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
from helpers_engine import one_thread  # noqa: F401  (autouse: one PyTorch thread per test)

pytest.importorskip("fastapi", reason="fastapi is a test dependency (pip install -e '.[test]')")
from fastapi.testclient import TestClient  # noqa: E402

from fmbench import CLASSES  # noqa: E402
from fmbench.serve import MAX_BYTES, create_app, load_served  # noqa: E402


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def client():
    served = load_served([], ["cnn_seed", "vit_seed"], torch.device("cpu"))
    samples = (torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8), torch.arange(5))
    return TestClient(create_app(served, list(CLASSES), samples))


def shoe() -> bytes:
    a = np.full((60, 40), 250, dtype=np.uint8)                     # light background: the page inverts it
    a[30:50, 5:35] = 20
    return png(a)


def test_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and "<canvas" in r.text
    assert "http://" not in r.text and "https://" not in r.text     # no external fonts, scripts or styles


def test_models_and_samples(client):
    r = client.get("/api/models").json()
    assert [m["name"] for m in r["models"]] == ["cnn_seed", "vit_seed"] and r["classes"] == list(CLASSES)
    assert {m["family"] for m in r["models"]} == {"cnn", "vit"} and r["models"][0]["card"]["sha256"]
    s = client.get("/api/samples?n=3").json()["samples"]
    assert len(s) == 3 and np.array(s[0]["pixels"]).shape == (28, 28)


def test_predict_answers_every_model(client):
    r = client.post("/api/predict", files={"file": ("shoe.png", shoe(), "image/png")})
    assert r.status_code == 200
    j = r.json()
    assert np.array(j["input_28x28"]).shape == (28, 28)
    assert [m["name"] for m in j["models"]] == ["cnn_seed", "vit_seed"]
    for m in j["models"]:
        assert len(m["top"]) == 5 and m["ms"] >= 0
        assert abs(sum(t["probability"] for t in m["top"]) - 1) < 0.5
        sal = np.array(m["saliency"])
        assert sal.shape == (28, 28) and 0 <= sal.min() and sal.max() <= 1


@pytest.mark.parametrize("make, status, message", [
    (lambda: {"files": {"file": ("a.txt", b"hello", "image/png")}}, 400, "not a readable image"),
    (lambda: {"files": {"file": ("a.png", b"", "image/png")}}, 400, "empty"),
    (lambda: {"files": {"file": ("a.txt", b"hello", "text/plain")}}, 415, "not an image"),
    (lambda: {"files": {"other": ("a.png", shoe(), "image/png")}}, 400, "no multipart field 'file'"),
    (lambda: {"content": b"raw", "headers": {"content-type": "image/png"}}, 415, "multipart/form-data"),
    (lambda: {"files": {"file": ("big.png", b"\0" * (MAX_BYTES + 10), "image/png")}}, 413, "limit"),
    (lambda: {"files": {"file": ("bomb.png", png(np.zeros((5000, 4000), dtype=np.uint8)), "image/png")}}, 413,
     "4000x5000 pixels is over the limit"),
])
def test_bad_input_is_a_4xx_json_error_and_the_server_keeps_serving(client, make, status, message):
    r = client.post("/api/predict", **make())
    assert r.status_code == status and message in r.json()["error"]
    assert client.post("/api/predict", files={"file": ("shoe.png", shoe(), "image/png")}).status_code == 200


def test_concurrent_requests_all_succeed_with_the_same_answer(client):
    answers, errors = [], []

    def worker():
        try:
            r = client.post("/api/predict", files={"file": ("shoe.png", shoe(), "image/png")})
            answers.append(r.json()["models"][0]["top"][0]["class"] if r.status_code == 200 else r.status_code)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(answers) == 8 and len(set(answers)) == 1
