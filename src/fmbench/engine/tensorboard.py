"""A run's TensorBoard event files: each epoch's metrics.jsonl record, as scalars, in RUN_DIR/tb/.

Optional: tensorboardX (the `tb` extra) writes them; without it a run trains as before and the
log says once that it writes none. `tensorboard --logdir DIR` over a folder of run directories (a
search's DIR/trials, a study's OUT/runs) shows every run beside the others, as RUN_NAME/tb.

The step is the epoch. Each session of training (a run, each resume of it) writes its own event
file, which TensorBoard merges; the file's first event drops any step from the epoch it starts at
on (TensorBoard's purge step), as `rundir.keep_epochs` does for metrics.jsonl, so a resumed run
shows each epoch once.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from fmbench import rundir as R

logger = logging.getLogger(__name__)

# metrics.jsonl key -> tag. Grouped by metric, so train and validation sit side by side; F1 is
# weighted (engine.metrics.report), train figures are the running ones of the epoch.
TAGS = {"train_loss": "loss/train", "val_loss": "loss/val",
        "train_accuracy": "accuracy/train", "val_accuracy": "accuracy/val",
        "train_f1": "f1_weighted/train", "val_f1": "f1_weighted/val",
        "lr": "lr"}


def _summary_writer() -> type | None:
    """tensorboardX's SummaryWriter, or None (said once per process) when it is not installed."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        _say_off()
        return None
    return SummaryWriter


@functools.cache
def _say_off() -> None:
    logger.info("no TensorBoard event files: tensorboardX is not installed (pip install 'fmbench[tb]')")


class EpochEvents:
    """RUN_DIR/tb/'s writer for one session of training: `write` each epoch's record, `close` at
    the end (or interruption). The file is opened by the first write, so a session that trains
    no epoch (or a process that records none, as torchrun's other ranks) leaves nothing behind."""

    def __init__(self, run_dir: Path, first_epoch: int = 1) -> None:
        self.dir = Path(run_dir) / R.TB
        self.first_epoch = first_epoch   # steps from here on replace those an earlier file holds
        self._writer = None
        self._off = False

    def write(self, record: dict[str, Any]) -> None:
        """Add one metrics.jsonl record at step = its epoch, flushed (TensorBoard shows it live)."""
        writer = self._open()
        if writer is None:
            return
        for key, tag in TAGS.items():
            if record.get(key) is not None:   # a shipped card's curve may predate a field
                writer.add_scalar(tag, record[key], record["epoch"])
        writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> EpochEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self):
        if self._writer is None and not self._off:
            writer_class = _summary_writer()
            self._off = writer_class is None
            if writer_class is not None:
                # tensorboardX names a file by the second and host: a resume in the same second would
                # overwrite the last file without the count (the writer lock keeps it one process).
                n = len(list(self.dir.glob("*tfevents*"))) if self.dir.is_dir() else 0
                self._writer = writer_class(str(self.dir), purge_step=self.first_epoch, filename_suffix=f".{n:03d}")
        return self._writer
