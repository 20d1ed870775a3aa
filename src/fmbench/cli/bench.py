"""`fmbench bench`: training and inference speed of the engine against a plain-PyTorch loop."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmbench.cli.common import RAW, add_data_args, load_data
from fmbench.errors import ConfigError

EPILOG = """examples:
  fmbench bench                                        cnn_seed and vit_seed, 5 steps x 3 rounds
  fmbench bench --models cnn_seed --steps 10 --json bench.json
  OMP_WAIT_POLICY=PASSIVE fmbench bench --threads 1    on a machine other processes are busy on

Each round trains `--steps` optimizer steps with a plain PyTorch tutorial loop (fp32, DataLoader,
per-sample augmentation) and with fmbench's engine (the model's `seed` preset), alternating.
Models without a reference loop (anything but cnn_seed and vit_seed) are timed on the fmbench
side only. See docs/performance.md.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark training speed against a plain PyTorch loop", formatter_class=RAW,
                       epilog=EPILOG,
                       description="Measure training images/s of fmbench's engine and of a plain PyTorch "
                                   "reference loop, alternating in one process, plus inference images/s, "
                                   "single-image latency and peak memory.")
    p.add_argument("--models", default="cnn_seed,vit_seed", metavar="NAMES",
                   help="comma-separated registered models (default: cnn_seed,vit_seed)")
    p.add_argument("--steps", type=int, default=5, metavar="N", help="optimizer steps per side and round (default 5)")
    p.add_argument("--rounds", type=int, default=3, metavar="R", help="alternating rounds (default 3)")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="intra-op threads (default: PyTorch's)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    add_data_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmbench import bench
    from fmbench.models import get_spec
    from fmbench.runtime import set_threads

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if not names:
        raise ConfigError("--models: give at least one model, e.g. --models cnn_seed")
    for name in names:
        get_spec(name)  # unknown names fail here, listing the registered ones
    if args.steps < 1 or args.rounds < 1:
        raise ConfigError("--steps and --rounds must be >= 1")
    if args.threads < 0:
        raise ConfigError("--threads must be >= 0 (0 = PyTorch's default)")
    set_threads(args.threads)
    data = load_data(args)
    result = bench.run(data, names, args.steps, args.rounds)
    print(bench.table(result))
    if args.json:
        bench.write_json(result, args.json)
        print(f"results written to {args.json}")
    return 0
