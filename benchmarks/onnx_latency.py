"""Single-image latency: ONNX Runtime against PyTorch (as `fmbench predict` runs it), per shipped model.

    python benchmarks/onnx_latency.py --out /tmp/onnx    (exports there first when a file is missing)

Both on one thread (one 28x28 image is too little work to split), median of 300 calls after 20
warm-up calls, in the same process, alternating models; prints milliseconds and the ratio.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="cnn_seed,vit_seed,cnn_best,vit_best")
    ap.add_argument("--out", type=Path, default=Path("onnx-models"))
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args()

    import onnxruntime as ort

    from fmbench.data import load_fashion_mnist
    from fmbench.engine.loop import predict_logits
    from fmbench.engine.speed import median_seconds
    from fmbench.export import export_onnx
    from fmbench.runtime import choose_precision
    from fmbench.weights import load_shipped

    torch.set_num_threads(1)
    data = load_fashion_mnist(args.data_dir)
    image = data.test_images[:1]
    rows = []
    for name in args.models.split(","):
        model, rc = load_shipped(name, "cpu")
        path = args.out / f"{name}.onnx"
        if not path.exists():
            export_onnx(model, name, {"weights": name}, path, data.test_images)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        x = image[:, None].float().div(255).numpy()
        precision = choose_precision(rc.train_cfg.precision, torch.device("cpu"))
        t_ort = 1000 * median_seconds(lambda: session.run(None, {"image": x}), warmup=20, repeats=300)
        t_torch = 1000 * median_seconds(lambda: predict_logits(model, image, 1, precision), warmup=20, repeats=300)
        rows.append({"model": name, "onnxruntime_ms": round(t_ort, 3), "pytorch_ms": round(t_torch, 3),
                     "pytorch_precision": precision, "pytorch_over_onnxruntime": round(t_torch / t_ort, 2)})
        print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
