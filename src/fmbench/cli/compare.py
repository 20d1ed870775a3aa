"""`fmbench compare`: the comparison report (Markdown, self-contained HTML, PNGs) from run directories."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

FASHION_MNIST_TEST_N = 10_000

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


def _test_images(args: argparse.Namespace, n_test: int, test_hash: str) -> tuple[Any, str]:
    """The test images in test-set order, or (None, why not) for the note in the report."""
    if args.no_images:
        return None, "--no-images was given"
    if n_test != FASHION_MNIST_TEST_N:
        return None, (f"the runs were evaluated on {n_test:,} test images, not the "
                      f"{FASHION_MNIST_TEST_N:,} of Fashion-MNIST, so the images are not available")
    from fmbench.errors import DataError

    try:
        from fmbench.data import load_fashion_mnist
    except ImportError as e:
        return None, f"the data module could not be imported ({e})"
    try:
        ds = load_fashion_mnist(args.data_dir, download=not args.no_download,
                                log=lambda msg: print(msg, file=sys.stderr))
    except DataError as e:
        print(f"fmbench: warning: example images omitted: {e}", file=sys.stderr)
        return None, f"the test images could not be loaded ({e})"
    if ds.test_hash != test_hash:
        return None, (f"the test images found ({ds.source}, test_hash {ds.test_hash[:12]}) are not "
                      f"the ones the runs were evaluated on (test_hash {test_hash[:12]})")
    return ds.test_images, ""


def run(args: argparse.Namespace) -> int:
    from fmbench.report import load_runs, write_report

    from fmbench.cli.common import check_out_dir

    from fmbench.errors import RunDirError
    from fmbench.report.studies import find_study

    check_out_dir(args.out)
    studies, run_dirs = [], []
    for d in args.run_dirs:
        study = find_study(d) if d.is_dir() else None
        (studies.append(study) if study is not None else run_dirs.append(d))
    if not run_dirs:
        raise RunDirError("no run directories given (only study directories); the report compares runs")
    groups = load_runs(run_dirs)               # RunDirError -> one line, exit 2
    first = next(iter(groups.values()))[0]
    for study, d in zip(studies, [d for d in args.run_dirs if d not in run_dirs]):
        if study["test_hash"] != first.test_hash:
            raise RunDirError(f"{d}: the study was run on other test data (test_hash {study['test_hash'][:12]}) "
                              f"than the runs ({first.test_hash[:12]})")
    images, note = _test_images(args, first.n_test, first.test_hash)
    html = write_report(groups, args.out, test_images=images, command=_command(args),
                        images_note=note, studies=studies)
    print(f"wrote {html} and {html.with_suffix('.md')} ({html.parent / 'figures'})")
    return 0
