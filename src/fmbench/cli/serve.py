"""`fmbench serve`: a local web page to try models side by side (and its JSON API)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmbench.cli.common import RAW, add_data_args, add_device_args

EPILOG = """examples:
  fmbench serve                                   cnn_best and vit_best at http://127.0.0.1:8000
  fmbench serve --models cnn_seed,vit_seed --port 8080
  fmbench serve runs/cnn_seed-fast-seed42-1a2b3c4d --models vit_best
  curl -F file=@shoe.jpg http://127.0.0.1:8000/api/predict
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="a local page to try the models side by side", formatter_class=RAW,
                       epilog=EPILOG,
                       description="Start a web server with one self-contained page (works offline): draw or "
                                   "upload a garment, or click a test image, and see each model's top 5, time "
                                   "and saliency map. JSON API: POST /api/predict (multipart 'file'), GET "
                                   "/api/models.")
    p.add_argument("run_dirs", nargs="*", type=Path, metavar="RUN_DIR", help="trained runs to serve")
    p.add_argument("--models", help="shipped weights to serve (default when no RUN_DIR: cnn_best,vit_best)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    add_device_args(p)
    add_data_args(p)
    p.set_defaults(func=run, trailing_positionals="run_dirs")


def run(args: argparse.Namespace) -> int:
    from fmbench import CLASSES
    from fmbench.errors import ConfigError, DataError
    from fmbench.runtime import choose_device

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {args.port}")
    try:
        import uvicorn

        from fmbench.serve import create_app, load_served
    except ImportError:
        raise ConfigError("the server needs FastAPI and uvicorn: pip install 'fmbench[serve]'") from None
    names = [m.strip() for m in (args.models or "").split(",") if m.strip()]
    if not names and not args.run_dirs:
        names = ["cnn_best", "vit_best"]
    device = choose_device(args.device)
    served = load_served(list(args.run_dirs), names, device, args.precision)
    samples = None
    try:
        from fmbench.cli.common import load_data

        data = load_data(args)
        samples = (data.test_images, data.test_labels)
    except DataError as e:
        print(f"fmbench: warning: no test images to click ({e})", file=sys.stderr)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"fmbench: warning: serving on {args.host}: the page has no authentication; anyone who can reach "
              "this address can use it", file=sys.stderr)
    print(f"serving {', '.join(s.name for s in served)} at http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(create_app(served, list(CLASSES), samples), host=args.host, port=args.port, log_level="warning")
    return 0
