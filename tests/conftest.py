"""Shared fixtures: tiny synthetic IDX data, the real data set, and an environment that never
touches ~/.cache or the network.

- `tiny_idx_dir`: a fresh directory with the four Fashion-MNIST file names holding random data
  (TINY_TRAIN / TINY_TEST images, every class present) as real gzipped IDX files. Load it with
  `load_fashion_mnist(tiny_idx_dir, verify=False)`: it is not Fashion-MNIST, so verification fails.
- `make_tiny_idx`: the writer behind `tiny_idx_dir` (directory, n_train=, n_test=, seed=, compress=).
- `load_idx(directory)`: the data set in such files, cached beside them (for module-scoped fixtures).
- `run_cli`: `run_cli("data", "--no-download")` runs `fmbench.cli.main` in-process and returns
  (exit code, stdout, stderr).
- `real_data_dir`: where fmbench's own lookup finds the real files for this user (FMBENCH_DATA_DIR,
  the cache, Debian's directory); fails, never skips, when they are nowhere. Never write there.
- `real_dataset`: the real data set loaded once per session (verified), from a session cache.
- autouse `_fmbench_env`: FMBENCH_CACHE_DIR points at a per-session temporary cache,
  FMBENCH_DEBIAN_DIR at an empty directory, FMBENCH_MIRRORS at a closed local port with one
  attempt and no backoff, FMBENCH_DATA_DIR is unset. A test that needs its own cache sets its own.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from fmbench.data.idx import idx_bytes

TINY_TRAIN, TINY_TEST = 40, 20


def _find_real_data() -> tuple[Path | None, str]:
    """Where fmbench itself finds Fashion-MNIST for this user (FMBENCH_DATA_DIR, the cache, Debian's
    directory; never a download): (directory, how), or (None, why not)."""
    from fmbench.data.sources import locate
    from fmbench.errors import DataError

    try:
        found = locate(download=False)
    except DataError as e:
        return None, str(e)
    dirs = {p.parent for p in found.paths.values()}
    if len(dirs) != 1:
        return None, f"the four files are spread over {sorted(map(str, dirs))}"
    return dirs.pop(), found.source


# Looked up once, at import: before the autouse fixture below points fmbench at empty places.
REAL_DATA_DIR, REAL_DATA_SOURCE = _find_real_data()


def _need_real_data() -> Path:
    if REAL_DATA_DIR is None:
        pytest.fail(f"the real-data tests need Fashion-MNIST: {REAL_DATA_SOURCE}. `make test` gets it "
                    "first (scripts/ensure-data.sh, as `make demo` does); or set FMBENCH_DATA_DIR=DIR",
                    pytrace=False)
    return REAL_DATA_DIR


def write_tiny_idx(directory: Path, *, n_train: int = TINY_TRAIN, n_test: int = TINY_TEST,
                   seed: int = 0, compress: bool = True) -> Path:
    """Write random 28x28 images and labels (all 10 classes present) as the four IDX files."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        for stem, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = idx_bytes(array)
            if compress:
                (directory / f"{stem}.gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                (directory / stem).write_bytes(data)
    return directory


def load_idx(directory: Path):
    """The data set in IDX files a test wrote (unverified), cached beside them: a module-scoped fixture
    runs before the autouse one below points FMBENCH_CACHE_DIR away from ~."""
    from fmbench.data import load_fashion_mnist

    return load_fashion_mnist(directory, verify=False, download=False, cache_dir=Path(directory).parent / "cache")


@pytest.fixture
def tiny_idx_dir(tmp_path: Path) -> Path:
    """A directory with tiny random Fashion-MNIST-shaped IDX files (.gz)."""
    return write_tiny_idx(tmp_path / "tiny-idx")


@pytest.fixture
def make_tiny_idx():
    """`write_tiny_idx(directory, *, n_train, n_test, seed, compress)` for tests that need variants."""
    return write_tiny_idx


@pytest.fixture(scope="session")
def benchmark_script():
    """Load benchmarks/NAME.py as a module (the scripts are not a package): benchmark_script("ab_overrides")."""
    import importlib.util

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture):
    """Run the CLI in-process: run_cli(*argv) -> (exit code, stdout, stderr)."""
    from fmbench.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()  # drop anything printed before
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def real_data_dir() -> Path:
    """The directory where fmbench finds the real Fashion-MNIST for this user; read-only. A missing
    data set fails the test (it never skips): `make test` gets the data first."""
    return _need_real_data()


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fmbench-cache")


@pytest.fixture(scope="session")
def real_dataset(session_cache: Path):
    """The real data set, verified, loaded once per test session."""
    from fmbench.data import load_fashion_mnist

    return load_fashion_mnist(_need_real_data(), cache_dir=session_cache, download=False)


@pytest.fixture(autouse=True)
def _fmbench_env(monkeypatch: pytest.MonkeyPatch, session_cache: Path, tmp_path_factory) -> None:
    """Keep every test off ~/.cache, /usr/share/datasets and the network."""
    empty = tmp_path_factory.getbasetemp() / "empty-debian-dir"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("FMBENCH_CACHE_DIR", str(session_cache))
    monkeypatch.setenv("FMBENCH_DEBIAN_DIR", str(empty))
    monkeypatch.setenv("FMBENCH_MIRRORS", "http://127.0.0.1:9/")  # discard port: connection refused
    monkeypatch.setenv("FMBENCH_DOWNLOAD_RETRIES", "1")
    monkeypatch.setenv("FMBENCH_DOWNLOAD_BACKOFF", "0")
    monkeypatch.setenv("FMBENCH_DOWNLOAD_TIMEOUT", "5")
    monkeypatch.delenv("FMBENCH_DATA_DIR", raising=False)
