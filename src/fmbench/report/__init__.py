"""The comparison report, built only from run directories (never from live objects).

    from fmbench.report import build_report
    build_report([Path("runs/cnn_seed-fast"), Path("runs/vit_seed-fast")], Path("report"))
"""

from __future__ import annotations

from fmbench.report.build import build_report, write_report
from fmbench.report.runs import RunRecord, load_run, load_runs

__all__ = ["build_report", "write_report", "RunRecord", "load_run", "load_runs"]
