#!/usr/bin/env python
"""Wall time to a TEST accuracy, through fmbench's own `fit`, over several seeds.

    python benchmarks/time_to_accuracy.py --model cnn_best --preset fast --target 0.95 --seeds 3 \\
        [--budget 900] [--json tta.json [--resume]] [--set epochs=12] [--device cuda] [--every-epoch]

For each seed (the preset's seed, then +1, +2, ...) the clock starts once the data set is in
memory (it is parsed once and shared by the seeds) and covers what `fmbench train` does to get a
model: model construction, the split, every epoch of `engine.loop.fit` (training, the validation
pass, checkpoints, the best weights restored) and then one evaluation of the test set. Not counted:
the process start and data parsing (a few seconds) and what `fmbench train` adds after the model is
trained (evaluating the training set and recording explanations).

Before each seed's clock starts, a 2048x2048 matmul in the run's precision (bf16 or fp32) on its
threads measures how fast the host is just then (`host GF/s`, `host_gflops` in the JSON; CPU only):
on a shared machine the same seed's wall time moves by half with the neighbours' load, and this
says which of two records ran on the slower host.

OpenMP's wait policy is what `fmbench train` runs with: the environment's OMP_WAIT_POLICY, else
the OpenMP runtime's default, recorded as `omp_wait_policy` (the throughput benchmarks set PASSIVE
for busy machines; on a quiet one that slowed `cnn_seed`'s training by 4-26%, docs/performance.md).

By default each seed trains the preset's whole schedule and the test set is evaluated once, at the
end: a recipe whose learning rate decays to 0 reaches its accuracy there. With `--every-epoch` the
test set is evaluated after every epoch (counted in the time) and a seed stops at the first epoch
that reaches the target: time to target in the strict sense.

A target counts as met when the MEAN test accuracy over the seeds reaches `--target` and, given
`--budget`, the mean wall time is within it. The table shows each seed and the mean, min and max.
The test set is only looked at for this measurement; `fit` never sees it.

With `--json` the record is rewritten (atomically) after every seed, so a long benchmark that is
interrupted loses at most the seed in progress: `--resume` keeps the seeds already recorded in the
JSON (it must be the same model, preset, settings and mode) and runs only the missing ones. Each
seed's record carries its own CPU name and date, since resumed seeds may come from another session.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from fmbench import __version__
from fmbench.config import parse_set_args
from fmbench.data import load_fashion_mnist
from fmbench.data.batches import make_splits
from fmbench.engine.loop import evaluate, fit
from fmbench.engine.speed import matmul_gflops
from fmbench.errors import FmbenchError, RunDirError
from fmbench.fileio import read_json, write_json
from fmbench.models import build_model
from fmbench.runtime import choose_device, choose_precision, cpu_name, seed_everything, set_threads
from fmbench.spec import make_spec


def time_to_accuracy(data, model_name: str, preset: str, target: float, overrides: dict | None = None,
                     device_name: str = "cpu", every_epoch: bool = False, log=print) -> dict:
    """One seed: train with `fit` and evaluate the test set at the end (or, with `every_epoch`, after
    each epoch, stopping at the first that reaches `target`). Seconds are wall time from model
    construction to the test accuracy."""
    rc = make_spec(model_name, preset, overrides)
    cfg = rc.train_cfg
    set_threads(cfg.threads)
    device = choose_device(device_name)
    precision = choose_precision(cfg.precision, device)
    host = matmul_gflops(torch.bfloat16 if precision == "bf16" else torch.float32) if device.type == "cpu" else None
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    model = build_model(model_name, rc.model_cfg).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    splits = make_splits(data, cfg, device)
    history: list[dict] = []

    def record(epoch: int, rec: dict) -> dict:
        test, _ = evaluate(model, splits.test_x, splits.test_y, cfg, precision)
        if device.type == "cuda":
            torch.cuda.synchronize()
        h = {"epoch": epoch, "elapsed_s": round(time.perf_counter() - t0, 2), "test_accuracy": test["accuracy"],
             "val_accuracy": rec.get("val_accuracy"), "train_images_per_s": rec.get("images_per_s")}
        history.append(h)
        log(f"  seed {cfg.seed} epoch {epoch:>2}  {h['elapsed_s']:7.1f} s  test accuracy {test['accuracy']:.4f}")
        return h

    def on_epoch(epoch: int, rec: dict) -> bool:
        epochs.append(rec)
        log(f"  seed {cfg.seed} epoch {epoch:>2}  {time.perf_counter() - t0:7.1f} s  val accuracy "
            f"{rec['val_accuracy']:.4f}  {rec['images_per_s']:,.0f} img/s")
        return every_epoch and record(epoch, rec)["test_accuracy"] >= target

    epochs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="fmbench-tta-") as run_dir:
        fit(model, splits, cfg, Path(run_dir), precision, on_epoch=on_epoch)
    if not every_epoch:  # fit has restored the best-validation weights, as `fmbench train` evaluates them
        record(len(epochs), {"val_accuracy": max(e["val_accuracy"] for e in epochs),
                             "images_per_s": statistics.median(e["images_per_s"] for e in epochs)})
    hit = next((h for h in history if h["test_accuracy"] >= target), None)
    final = history[-1]
    return {
        "seed": cfg.seed, "reached": hit is not None, "seconds": final["elapsed_s"], "epochs": final["epoch"],
        "test_accuracy": final["test_accuracy"], "seconds_to_target": hit["elapsed_s"] if hit else None,
        "history": history, "epoch_records": epochs, "precision": precision, "threads": torch.get_num_threads(),
        "device": str(device), "host_gflops": host, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "train_config": dict(vars(cfg)), "model_config": dict(vars(rc.model_cfg)),
    }


def summarize(runs: list[dict], target: float, budget: float | None) -> dict:
    """Mean, min and max of wall time and test accuracy over the seeds, and whether the target is met."""
    secs = [r["seconds"] for r in runs]
    accs = [r["test_accuracy"] for r in runs]
    out = {"seeds": len(runs), "seconds_mean": round(statistics.fmean(secs), 1), "seconds_min": min(secs),
           "seconds_max": max(secs), "accuracy_mean": round(statistics.fmean(accs), 5), "accuracy_min": min(accs),
           "accuracy_max": max(accs), "target": target, "budget_s": budget}
    out["accuracy_met"] = out["accuracy_mean"] >= target
    out["time_met"] = None if budget is None else out["seconds_mean"] <= budget
    out["met"] = out["accuracy_met"] and out["time_met"] is not False
    return out


def table(model: str, preset: str, runs: list[dict], s: dict) -> str:
    lines = [f"{model} --preset {preset}: target test accuracy {s['target']:.2%}"
             + (f" within {s['budget_s']:.0f} s" if s["budget_s"] else ""),
             f"{'seed':>6} {'epochs':>6} {'wall s':>8} {'test acc':>9} {'host GF/s':>10}", "-" * 43]
    lines += [f"{r['seed']:>6} {r['epochs']:>6} {r['seconds']:>8.1f} {r['test_accuracy']:>9.2%} "
              f"{'' if r.get('host_gflops') is None else format(r['host_gflops'], '.0f'):>10}" for r in runs]
    lines += ["-" * 43,
              f"{'mean':>6} {'':>6} {s['seconds_mean']:>8.1f} {s['accuracy_mean']:>9.2%}",
              f"{'min':>6} {'':>6} {s['seconds_min']:>8.1f} {s['accuracy_min']:>9.2%}",
              f"{'max':>6} {'':>6} {s['seconds_max']:>8.1f} {s['accuracy_max']:>9.2%}",
              "target " + ("MET" if s["met"] else "MISSED") + f": mean accuracy {s['accuracy_mean']:.2%} "
              + (">=" if s["accuracy_met"] else "<") + f" {s['target']:.2%}"
              + ("" if s["time_met"] is None else f", mean wall {s['seconds_mean']:.0f} s "
                 + ("<=" if s["time_met"] else ">") + f" {s['budget_s']:.0f} s")]
    return "\n".join(lines)


def identity(args: argparse.Namespace, overrides: dict) -> dict:
    """What makes two records the same benchmark (what `--resume` checks)."""
    return {"benchmark": "time_to_accuracy", "model": args.model, "preset": args.preset, "overrides": overrides,
            "every_epoch": args.every_epoch}


def record(args: argparse.Namespace, overrides: dict, runs: list[dict]) -> dict:
    """The JSON record: what was run, the summary over the seeds so far and every seed's run."""
    return {
        **identity(args, overrides), "summary": summarize(runs, args.target, args.budget), "runs": runs,
        "cpu": cpu_name(), "torch": torch.__version__, "fmbench": __version__, "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if runs[-1]["device"].startswith("cuda") else None,
    }


def recorded_runs(args: argparse.Namespace, overrides: dict, base_seed: int) -> list[dict]:
    """The seeds already in `args.json` for `--resume`; a record of another benchmark, or one holding
    more seeds than `--seeds` (rewriting it would drop them), is refused."""
    if not args.json.exists():
        return []
    old = read_json(args.json)
    mine = identity(args, overrides)
    if not isinstance(old, dict) or not isinstance(old.get("runs"), list):
        raise RunDirError(f"{args.json}: not a time_to_accuracy record (no list of runs)")
    differ = [k for k, v in mine.items() if old.get(k) != v]
    if differ:
        raise RunDirError(f"{args.json}: recorded with another {', '.join(differ)} "
                          f"({', '.join(f'{k}={old.get(k)!r}' for k in differ)}); use another --json to start afresh")
    seeds = [r.get("seed") for r in old["runs"]]
    if seeds != list(range(base_seed, base_seed + len(seeds))):
        raise RunDirError(f"{args.json}: recorded seeds {seeds} are not {base_seed}, {base_seed + 1}, ... in order")
    if len(seeds) > args.seeds:
        raise RunDirError(f"{args.json}: holds {len(seeds)} seeds, more than --seeds {args.seeds}; "
                          f"ask for --seeds {len(seeds)} or use another --json")
    print(f"resuming: seed(s) {', '.join(map(str, seeds))} already recorded in {args.json}", file=sys.stderr)
    return [{"cpu": old.get("cpu"), **r} for r in old["runs"]]  # records from before --resume name the CPU once


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", default="cnn_seed")
    p.add_argument("--preset", default="fast")
    p.add_argument("--target", type=float, default=0.92, help="test accuracy to reach (default 0.92)")
    p.add_argument("--seeds", type=int, default=1, help="how many seeds: the preset's seed and the next ones (default 1)")
    p.add_argument("--budget", type=float, metavar="SECONDS", help="wall-time target for the mean over the seeds")
    p.add_argument("--every-epoch", action="store_true", help="evaluate the test set after every epoch and stop "
                   "a seed at the first epoch that reaches the target")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")
    p.add_argument("--data-dir", type=Path, help="directory with the Fashion-MNIST IDX files")
    p.add_argument("--no-verify", action="store_true", help="skip SHA-256 verification (MNIST-like data sets)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the result as JSON (after every seed)")
    p.add_argument("--resume", action="store_true", help="keep the seeds already recorded in --json and run "
                   "only the missing ones")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    if args.resume and not args.json:
        p.error("--resume needs --json, the record to continue")
    if not 0 < args.target <= 1:
        p.error("--target is a test accuracy in (0, 1]")
    try:
        overrides = parse_set_args(args.set)
        base_seed = make_spec(args.model, args.preset, overrides).train_cfg.seed
        runs = recorded_runs(args, overrides, base_seed) if args.resume else []
        data = load_fashion_mnist(args.data_dir, verify=not args.no_verify)
        for i in range(len(runs), args.seeds):
            r = time_to_accuracy(data, args.model, args.preset, args.target,
                                 {**overrides, "seed": str(base_seed + i)}, args.device, args.every_epoch)
            runs.append({**r, "cpu": cpu_name(), "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
            print(f"seed {r['seed']}: test accuracy {r['test_accuracy']:.2%} after {r['epochs']} epochs, "
                  f"{r['seconds']:.1f} s wall", flush=True)
            if args.json:
                write_json(args.json, record(args, overrides, runs))
    except FmbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    s = summarize(runs, args.target, args.budget)
    print(table(args.model, args.preset, runs, s))
    print(f"{cpu_name()}, {runs[-1]['threads']} threads, {runs[-1]['precision']}, torch {torch.__version__}, "
          f"device {runs[-1]['device']}, OMP_WAIT_POLICY={runs[-1].get('omp_wait_policy', 'not recorded')}")
    if args.json:
        write_json(args.json, record(args, overrides, runs))
    return 0 if s["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
