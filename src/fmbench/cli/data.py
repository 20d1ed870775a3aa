"""`fmbench data`: find and verify Fashion-MNIST, print where it came from and the class counts."""

from __future__ import annotations

import argparse

from fmbench.cli.common import add_data_args, load_data

EPILOG = """examples:
  fmbench data                                  search, verify (download if needed), print counts
  fmbench data --data-dir ../shared/datasets/fashion-mnist --grid classes.png
  fmbench data --no-download                    fail instead of downloading
  fmbench data --data-dir ~/mnist --no-verify   an MNIST-like set in the same IDX format

search order: --data-dir (or $FMBENCH_DATA_DIR); the cache ($FMBENCH_CACHE_DIR, else
$XDG_CACHE_HOME/fmbench, else ~/.cache/fmbench); /usr/share/datasets/fashion-mnist (Debian
package dataset-fashion-mnist); download from the mirrors into the cache.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="find, verify and summarise Fashion-MNIST",
        description="Find Fashion-MNIST (or download it), verify its SHA-256, and print where it came "
                    "from with the image counts per split and class.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_args(p)
    p.add_argument("--grid", metavar="FILE.png", help="also draw 8 examples of each class into this image")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmbench.data.grid import figure_format, save_example_grid

    if args.grid:
        figure_format(args.grid)  # a bad file name fails before any loading or downloading

    ds = load_data(args)
    print(f"source:   {ds.source}")
    print("sha256:   " + ("not checked (--no-verify)" if args.no_verify
                          else "verified against the published Fashion-MNIST hashes"))
    print(f"test set: {ds.test_hash[:16]} (test_hash)")
    print(f"images:   {tuple(ds.train_images.shape[1:])} {str(ds.train_images.dtype).removeprefix('torch.')}")
    print()
    train = ds.train_labels.bincount(minlength=len(ds.classes)).tolist()
    test = ds.test_labels.bincount(minlength=len(ds.classes)).tolist()
    width = max(len(name) for name in ds.classes)
    print(f"  {'class':<{width}}  {'train':>7}  {'test':>7}")
    for c, name in enumerate(ds.classes):
        print(f"{c} {name:<{width}}  {train[c]:>7,}  {test[c]:>7,}")
    print(f"  {'total':<{width}}  {sum(train):>7,}  {sum(test):>7,}")
    if args.grid:
        print(f"\ngrid:     {save_example_grid(ds, args.grid)}")
    return 0
