"""Options shared by several subcommands (data location, device) and their handling."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

RAW = argparse.RawDescriptionHelpFormatter


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", type=Path, metavar="DIR",
                   help="directory with the four Fashion-MNIST IDX files (default: $FMBENCH_DATA_DIR, "
                        "the cache, Debian's /usr/share/datasets/fashion-mnist, then download)")
    g.add_argument("--mirror", action="append", metavar="URL",
                   help="base URL to download from (repeatable; default: $FMBENCH_MIRRORS or the public mirrors)")
    g.add_argument("--no-download", action="store_true", help="never download; fail if the data is not found")
    g.add_argument("--no-verify", action="store_true", help="skip SHA-256 verification (MNIST-like data sets)")
    g.add_argument("--cache-dir", type=Path, metavar="DIR", help="cache directory (default: ~/.cache/fmbench)")


def load_data(args: argparse.Namespace):
    """Find, verify and load the data set as the data options say (fmbench.load_data); progress goes to stderr."""
    from fmbench import api

    return api.load_data(args.data_dir, mirrors=args.mirror, download=not args.no_download, verify=not args.no_verify,
                         cache_dir=args.cache_dir, quiet=False)


def shipped_model(name_or_path: str):
    """`--weights NAME_OR_PATH`: the shipped weights (or a .safetensors with its card) as
    fmbench.create_model(..., pretrained=...) loads them."""
    from fmbench import api
    from fmbench.weights import read_card

    return api.create_model(read_card(name_or_path)["model"], pretrained=name_or_path)


def add_training_args(p: argparse.ArgumentParser, every: str = "", set_note: str = "") -> None:
    """--preset and --set, which `train`, `run` and `tune` share; `every` says whom they apply to in
    `run`, `set_note` what --set means besides (in `tune`: outside the search)."""
    p.add_argument("--preset", help=f"named recipe{every}, listed by `fmbench models` (default: the model's "
                                    "own, e.g. fast for cnn_seed/vit_seed, best for cnn_best/vit_best)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help=f"override one setting{every}{set_note} (repeatable; an unknown key lists the valid ones)")


def add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=os.environ.get("FMBENCH_DEVICE", "auto"),
                   help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto: bf16 where the device runs it fast, else fp32")


def add_sharing_args(p: argparse.ArgumentParser) -> None:
    """--storage and --workers, which `run` and `study data-size` share (fmbench.sharing)."""
    g = p.add_argument_group("sharing the runs between processes and machines (needs fmbench[tune])")
    g.add_argument("--workers", type=int, default=1, metavar="N",
                   help="train in N processes on this machine, sharing the runs through OUT/study.journal or "
                        "--storage; each uses --set threads=K threads (default: all cores each; K = cores / N)")
    g.add_argument("--storage", metavar="URL",
                   help="share the runs with every process given this URL: sqlite:///FILE, postgresql://..., "
                        "mysql://... or a journal file's path (docs/design.md, \"Many runs\")")


def overrides_from(args: argparse.Namespace) -> dict[str, str]:
    """--set items plus --precision, as one dict of overrides."""
    from fmbench.config import parse_set_args

    over = parse_set_args(getattr(args, "set", None))
    if getattr(args, "precision", None):
        over["precision"] = args.precision
    return over


def check_out_dir(path: Path) -> Path:
    """An output directory that can be created or reused; a file or such in the way is a user error."""
    from fmbench.errors import ConfigError

    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"{path}: cannot be a directory, {p} is an existing file")
            break
    return path


def model_name(model_or_run) -> str:
    """The registered name of a module from shipped_model or of a run directory's model."""
    if hasattr(model_or_run, "run_config"):
        return model_or_run.run_config.model
    from fmbench.spec import read_spec

    return read_spec(model_or_run).model
