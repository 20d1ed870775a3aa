"""Optuna's parts of a search: the storage (a journal file, or a database through SQLAlchemy), the
seeded sampler, the pruner, and the retry of a failed trial. Optuna is imported when one is made,
so that `import fmbench.tuning` and reading a recipe do not need it."""

from __future__ import annotations

import inspect
import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

from fmbench.errors import ConfigError

logger = logging.getLogger(__name__)

JOURNAL = "study.journal"
PRUNERS = ("median", "hyperband", "none")
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
# A database's workers beat every minute; a trial silent for three minutes is failed and retried.
HEARTBEAT_S, GRACE_S = 60, 180
SCHEMA_TRIES = 3          # a new database: tries at creating its tables while other workers do too


def load_optuna(what: str = "fmbench tune"):
    """Optuna, quiet (fmbench logs each trial itself), or a ConfigError saying that `what` needs it
    and how to install it."""
    try:
        import optuna as o
    except ImportError:
        raise ConfigError(f"{what} needs Optuna: pip install 'fmbench[tune]'") from None
    o.logging.set_verbosity(o.logging.WARNING)
    return o


def make_pruner(name: Any):
    """median (prune below the median of earlier trials at the same epoch, from the first epoch once
    3 trials finished), hyperband, none, or an Optuna pruner as it is."""
    o = load_optuna()
    if not isinstance(name, str):
        return name
    if name not in PRUNERS:
        raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)}; got {name!r}")
    return {"median": lambda: o.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
            "hyperband": lambda: o.pruners.HyperbandPruner(min_resource=1),
            "none": o.pruners.NopPruner}[name]()


def storage_label(url: str | None, out: Path) -> str:
    """The storage as records name it: a path, or a database URL without its password."""
    if url is None or "://" not in url:
        return str(Path(url) if url else Path(out) / JOURNAL)
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def open_storage(url: str | None, out: Path, retry_stale: bool = True):
    """The study's storage: DIR/study.journal, or `url`: sqlite:///FILE, postgresql://..., mysql://...
    (SQLAlchemy URLs, with heartbeats) or a journal file's path. Unreachable -> ConfigError.
    `retry_stale`: a database's trial whose worker fell silent is queued again (`retry`); else only failed."""
    o = load_optuna()
    if url is None or "://" not in url:
        path = Path(url) if url else Path(out) / JOURNAL
        if url and not path.parent.is_dir():
            raise ConfigError(f"--storage {url}: the directory {path.parent} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend

        return o.storages.JournalStorage(JournalFileBackend(str(path)))
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme not in RDB_SCHEMES:
        raise ConfigError(f"--storage {url}: unknown scheme {scheme!r}; use sqlite:///FILE, postgresql://..., "
                          "mysql://... or a journal file's path")
    import sqlalchemy

    try:
        where = storage_label(url, out)
    except sqlalchemy.exc.ArgumentError as e:
        raise ConfigError(f"--storage {url}: not a database URL ({e})") from None
    connect = {"timeout": 60} if scheme == "sqlite" else {"connect_timeout": 10}
    # Optuna 4.9 renamed failed_trial_callback; heartbeats are "experimental" (a warning per start)
    stale = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in
             inspect.signature(o.storages.RDBStorage).parameters else "failed_trial_callback")
    for attempt in range(SCHEMA_TRIES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", o.exceptions.ExperimentalWarning)
                return o.storages.RDBStorage(url, engine_kwargs={"connect_args": connect},
                                             heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                             **{stale: retry if retry_stale else None})
        except ImportError as e:
            raise ConfigError(f"--storage {where}: its database driver is missing ({e}); install it, e.g. "
                              "pip install 'psycopg[binary]' (PostgreSQL) or pymysql (MySQL)") from None
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as e:
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
            if attempt + 1 < SCHEMA_TRIES and _schema_race(e, reason):
                time.sleep(1.0 + attempt)   # another worker is creating the tables of a new database
                continue
            raise ConfigError(f"--storage {where}: cannot reach the database: {reason}") from None


def _schema_race(e: Exception, reason: str) -> bool:
    """Whether `e` (its driver's message `reason`) is two workers creating a new database's tables at
    once (Optuna creates them and stamps alembic_version on first use; the loser sees a duplicate),
    which a second try gets past."""
    import sqlalchemy

    return isinstance(e, sqlalchemy.exc.IntegrityError) or any(
        w in reason.lower() for w in ("already exists", "unique constraint", "duplicate key"))



def make_sampler(seed: int):
    """Optuna's TPE, seeded per trial: trial k's draws depend on (seed, k) and the finished trials,
    not on which worker asks. (One seed in N workers would otherwise draw the same first trials N
    times; and a search's first trials are the same however many workers share it.)"""
    o = load_optuna()
    TPE = o.samplers.TPESampler

    class PerTrialTPE(o.samplers.BaseSampler):
        def __init__(self) -> None:
            self._tpe = TPE(seed=seed)

        def before_trial(self, study, trial) -> None:
            self._tpe = TPE(seed=(seed * 1_000_003 + trial.number) % 2**32)
            self._tpe.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self._tpe.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._tpe.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, name, distribution):
            return self._tpe.sample_independent(study, trial, name, distribution)

        def after_trial(self, study, trial, state, values) -> None:
            self._tpe.after_trial(study, trial, state, values)

    return PerTrialTPE()



def worker_id() -> str:
    """HOST:PID, the worker a trial's "worker" user attribute names (fail_dead reads it back)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_dead(study) -> list:
    """Fail the trials that a dead process on this machine left running, and return them (a journal
    file has no heartbeats; a database's heartbeats do this for every machine)."""
    running = load_optuna().trial.TrialState.RUNNING
    dead = []
    for t in study.get_trials(deepcopy=False, states=(running,)):
        host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
            study.tell(t.number, state=load_optuna().trial.TrialState.FAIL, skip_if_finished=True)
            dead.append(t)
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def retry(study, trial) -> None:
    """Enqueue a failed trial's parameters again: its run directory is resumed, not trained anew."""
    if trial.params and not trial.user_attrs.get("surplus"):
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        logger.info("trial %d stopped unfinished; its parameters are queued again", trial.number)
