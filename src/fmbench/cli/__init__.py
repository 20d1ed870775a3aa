"""The `fmbench` command line: parsing only; every subcommand calls the library.

Each subcommand lives in its own module here with `register(subparsers)` that adds its parser
and sets `func(args) -> int`. Messages come from the library's loggers (fmbench.logs); `-q` and
`-v` before the subcommand set how much they show. `main(argv)` returns the exit code so tests run it in-process:
0 success, 2 user error (one line on stderr, no traceback), 1 unexpected internal error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from fmbench import __version__, logs
from fmbench.errors import FmbenchError

SUBCOMMANDS = ("data", "train", "evaluate", "predict", "explain", "export", "serve", "models", "run", "study", "compare", "bench",
               "tune")

EPILOG = """examples:
  fmbench run                          the study's CNN and ViT (fast recipes) beside the shipped strong pair
  fmbench data --grid classes.png      find and verify Fashion-MNIST, draw examples of each class
  fmbench train vit_seed --preset fast --set epochs=5
  fmbench evaluate runs/cnn_seed-fast --split test
"""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so that main() owns the exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sub = self.prog.removeprefix("fmbench").strip()
        raise FmbenchError(f"{sub}: {message}" if sub else message)


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every available subcommand."""
    parser = _Parser(
        prog="fmbench",
        description="Train, evaluate and compare a CNN and a Vision Transformer on Fashion-MNIST.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fmbench {__version__}")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="show only warnings and errors (progress bars and per-epoch lines stay)")
    talk.add_argument("-v", "--verbose", action="store_true", help="show debugging messages too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMANDS:
        importlib.import_module(f"fmbench.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        # A subcommand whose positionals may follow its options (`predict RUN --top 2 a.png b.png`)
        # names the list that takes them; anything else unrecognised is an error.
        dest = getattr(args, "trailing_positionals", None)
        if extra and dest and not any(e.startswith("-") for e in extra):
            getattr(args, dest).extend(extra)
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        logs.set_verbosity(logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO)
        code = int(args.func(args) or 0)
        sys.stdout.flush()                   # a closed pipe shows up here, not at interpreter exit
        return code
    except FmbenchError as e:
        print(f"fmbench: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`fmbench predict ... | head`): stop quietly, as a Unix tool killed by
        # SIGPIPE would (exit 141), and point stdout at /dev/null so that the final flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        # The file system refused (an existing file where a directory is wanted, permission denied,
        # no space left, read-only): a user-facing problem, one line naming the path and the cause.
        where = f"{e.filename}: " if e.filename else ""
        print(f"fmbench: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fmbench: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # --help / --version
        return int(e.code or 0) if isinstance(e.code, int) else 0


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
