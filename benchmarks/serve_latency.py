"""Latency of `fmbench serve`'s /api/predict under concurrent clients (issue 15's measurement).

    python benchmarks/serve_latency.py --models cnn_best,vit_best --clients 20 --seconds 30

Starts the server on a free local port (uvicorn, in this process), sends a 28x28 test-like PNG from
`--clients` threads for `--seconds`, and prints p50 / p95 / max latency, requests per second and
the count of non-200 answers. Each answer holds every model's top 5 and saliency map.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import statistics
import threading
import time

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="cnn_best,vit_best")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()

    import httpx
    import torch
    import uvicorn
    from PIL import Image

    from fmbench import CLASSES
    from fmbench.serve import create_app, load_served

    served = load_served([], args.models.split(","), torch.device("cpu"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(served, list(CLASSES)), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    a = np.zeros((28, 28), dtype=np.uint8)
    a[6:22, 8:20] = 200
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    body = buf.getvalue()
    latencies: list[float] = []
    failures = [0]
    stop = time.perf_counter() + args.seconds

    def client() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = c.post("/api/predict", files={"file": ("x.png", body, "image/png")})
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    failures[0] += 1

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    server.should_exit = True
    q = statistics.quantiles(latencies, n=100)
    print(json.dumps({"models": args.models, "clients": args.clients, "seconds": round(wall, 1),
                      "requests": len(latencies), "non_200": failures[0],
                      "requests_per_s": round(len(latencies) / wall, 1), "p50_ms": round(q[49] * 1000, 1),
                      "p95_ms": round(q[94] * 1000, 1), "max_ms": round(max(latencies) * 1000, 1)}))


if __name__ == "__main__":
    main()
