"""`fmbench compare`: the comparison report (Markdown, self-contained HTML, PNGs) from run directories."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

EPILOG = """examples:
  fmbench compare runs/cnn_seed-fast runs/vit_seed-fast --out report
  fmbench compare runs/cnn_seed-s0 runs/cnn_seed-s1 runs/vit_seed-s0 runs/vit_seed-s1
      (runs that differ only by seed are grouped: mean ± std and a test over seeds)

The report is built from the run directories only (config.json, env.json, metrics.jsonl,
eval.json, test_outputs.safetensors, summary.json). Example-image figures need the
Fashion-MNIST test images; they are omitted, with a note, when the runs were not evaluated on
the full 10,000-image test set, when the data cannot be found, or with --no-images.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare finished runs: tables, curves, errors, cost, significance tests",
        description="Write report.md, a self-contained report.html and figures/*.png comparing "
                    "finished run directories (all evaluated on the same test set).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                   help="finished run directories; a study's output directory (fmbench study ...) adds its section")
    p.add_argument("--out", type=Path, default=Path("report"), metavar="DIR",
                   help="where to write the report (default: ./report)")
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="directory with the Fashion-MNIST IDX files (for the example images)")
    p.add_argument("--no-download", action="store_true",
                   help="never download the data set; omit the example images if it is not found")
    p.add_argument("--no-images", action="store_true", help="do not load test images at all")
    p.set_defaults(func=run)


def _command(args: argparse.Namespace) -> str:
    argv = ["fmbench", "compare", *map(str, args.run_dirs), "--out", str(args.out)]
    if args.data_dir is not None:
        argv += ["--data-dir", str(args.data_dir)]
    argv += ["--no-download"] * args.no_download + ["--no-images"] * args.no_images
    return shlex.join(argv)


def run(args: argparse.Namespace) -> int:
    from fmbench import api
    from fmbench.cli.common import check_out_dir

    html = api.compare(args.run_dirs, check_out_dir(args.out), images=not args.no_images, data_dir=args.data_dir,
                       download=not args.no_download, command=_command(args))
    print(f"wrote {html} and {html.with_suffix('.md')} ({html.parent / 'figures'})")
    return 0
