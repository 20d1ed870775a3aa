"""The page in a real browser: headless Chromium opens it, uploads an image, sees both models answer.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them) and selenium (a test
dependency). The screenshot lands in test-artifacts/serve_page.png for a person to look at.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_page_uploads_an_image_and_shows_both_answers(tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium")
    import uvicorn
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from fmbench import CLASSES
    from fmbench.serve import create_app, load_served

    served = load_served([], ["cnn_seed", "vit_seed"], torch.device("cpu"))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(served, list(CLASSES)), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    image = np.full((90, 60), 245, dtype=np.uint8)             # a dark trouser shape on a light photo background
    image[10:80, 12:28] = 30
    image[10:80, 32:48] = 30
    image[10:25, 12:48] = 30
    upload = tmp_path / "trousers.png"
    Image.fromarray(image).save(upload)

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        driver.find_element(By.ID, "file").send_keys(str(upload))
        WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".model")) == 2)
        models = driver.find_elements(By.CSS_SELECTOR, ".model")
        assert [m.find_element(By.TAG_NAME, "h2").text for m in models] == ["cnn_seed", "vit_seed"]
        for m in models:
            bars = m.find_elements(By.CSS_SELECTOR, ".bar")
            assert len(bars) == 5 and bars[0].find_element(By.CSS_SELECTOR, ".name").text in CLASSES
        assert driver.find_element(By.ID, "error").text == ""
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "serve_page.png"))
        assert (ARTIFACTS / "serve_page.png").stat().st_size > 10_000
    finally:
        driver.quit()
        server.should_exit = True
