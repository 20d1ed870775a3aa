"""`fmbench models`: list the registered models with parameters and FLOPs per image."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the registered models",
        description="List the registered models with their parameter count, FLOPs per image, each "
                    "preset with what it is, its measured result and its cost, and the search space "
                    "that `fmbench tune` samples.",
        epilog="example:\n  fmbench models",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmbench.models import REGISTRY, count_flops, count_params, build_model
    from fmbench.space import describe

    print(f"{'model':<10} {'params':>10} {'MFLOP/img':>10}  family  tier    description")
    for name, spec in REGISTRY.items():
        model = build_model(name)
        print(f"{name:<10} {count_params(model):>10,} {count_flops(model) / 1e6:>10.2f}  "
              f"{spec.family:<6}  {spec.tier:<6}  {spec.description}")
        for preset, p in spec.presets.items():
            default = " (default)" if preset == spec.default_preset else ""
            print(f"    {preset:<6} {p.about}{default}")
        if spec.space:
            print(f"    search: {describe(spec.space)}")
    return 0
