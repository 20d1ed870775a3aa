"""Data parallel training with torchrun: 2 gloo processes on 127.0.0.1, CPU only.

A DDP run with per-process batch B must end with the same weights as one process with batch 2B
(no augmentation, no dropout, LayerNorm only: every source of randomness or batch coupling that
legitimately differs between the two is switched off). A rank that fails must fail the job.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SETTINGS = ["--set", "epochs=2", "--set", "precision=fp32", "--set", "dropout=0", "--set", "aug_rotation=0",
            "--set", "depth=2", "--set", "dim=32", "--set", "heads=2", "--set", "mlp_dim=64", "--set", "lr=1e-3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], timeout: float = 240, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def data_dir(make_tiny_idx, tmp_path: Path) -> Path:
    return make_tiny_idx(tmp_path / "idx", n_train=200, n_test=40)


@pytest.mark.slow
def test_ddp_two_processes_match_one_process_with_double_batch(data_dir: Path, tmp_path: Path, run_cli) -> None:
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    # The seed preset (plain Adam): under `fast` (AdamW, beta2 0.99) the attention's key bias, whose
    # gradient is zero up to rounding (softmax ignores a constant added to a row), follows Adam-scaled
    # rounding noise and differs by ~0.2% between the two set-ups while every other weight agrees to 1e-6.
    common = ["--data-dir", str(data_dir), "--no-verify", "--device", "cpu", "--preset", "seed", *SETTINGS]
    res = _torchrun(["-m", "fmbench", "train", "vit_seed", "--out", str(ddp), "--set", "batch_size=15", *common])
    assert res.returncode == 0, res.stderr[-3000:]
    code, _, err = run_cli("train", "vit_seed", "--out", single, "--set", "batch_size=30", *common)
    assert code == 0, err

    env = json.loads((ddp / "env.json").read_text())
    assert env["world_size"] == 2 and env["global_batch_size"] == 30
    a, b = load_file(str(ddp / "last.safetensors")), load_file(str(single / "last.safetensors"))
    assert a.keys() == b.keys()
    dim = 32
    for k in a:
        if k.endswith("attn.qkv.bias"):
            # The key bias (the middle third) adds a constant to each row of scores, which softmax
            # ignores: its gradient is zero up to rounding, and from vit_seed's MultiheadAttention
            # init (bias 0) Adam turns that rounding noise into lr-sized steps that differ between
            # the two set-ups. The query and value biases must agree like every other weight.
            a[k], b[k] = torch.cat([a[k][:dim], a[k][2 * dim:]]), torch.cat([b[k][:dim], b[k][2 * dim:]])
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"parameter {k} differs")
    ma = [json.loads(x) for x in (ddp / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (single / "metrics.jsonl").read_text().splitlines()]
    assert len(ma) == len(mb) == 2
    for ra, rb in zip(ma, mb):  # validation metrics reduced across ranks = one process on all images
        assert ra["val_accuracy"] == pytest.approx(rb["val_accuracy"], abs=1e-9)
        assert ra["val_loss"] == pytest.approx(rb["val_loss"], rel=1e-4)
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-4)


@pytest.mark.slow
def test_a_failing_rank_fails_the_job_instead_of_hanging(data_dir: Path, tmp_path: Path) -> None:
    entry = tmp_path / "failing_entry.py"
    entry.write_text(
        "import os, sys\n"
        "import fmbench.engine.loop as loop\n"
        "orig = loop.evaluate\n"
        "def evaluate(*a, **k):\n"
        "    if os.environ.get('RANK') == '1':\n"
        "        raise RuntimeError('simulated failure on rank 1')\n"
        "    return orig(*a, **k)\n"
        "loop.evaluate = evaluate\n"
        "from fmbench.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    res = _torchrun([str(entry), "train", "vit_seed", "--out", str(tmp_path / "run"), "--data-dir", str(data_dir),
                     "--no-verify", "--device", "cpu", "--set", "batch_size=15", *SETTINGS],
                    env_extra={"FMBENCH_DIST_TIMEOUT": "20"}, timeout=200)
    assert res.returncode != 0
    assert "simulated failure on rank 1" in res.stderr
