"""Downloading from mirrors, against local HTTP servers on 127.0.0.1 only (never the network)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import shutil
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fmbench.data import load_fashion_mnist, sources
from fmbench.errors import DataError

FIRST = sources.DOWNLOAD_ORDER[0]  # the first file fetched (the smallest)


class _Files(SimpleHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


class _HangUp(BaseHTTPRequestHandler):
    """Promises 100,000 bytes, sends 1,000, closes the connection."""

    def do_GET(self):
        self.server.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"\x1f\x8b" + b"x" * 998)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


class _Silent(_HangUp):
    """Accepts the request and never answers (until the test ends)."""

    def do_GET(self):
        self.server.requests.append(self.path)
        self.server.release.wait(10)


@contextmanager
def serve(directory: Path | None = None, handler=None):
    """An HTTP server on 127.0.0.1 (random port) in a thread; yields (base URL, server)."""
    handler = handler or functools.partial(_Files, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests, server.release = [], threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty cache and Debian dir; two attempts per mirror, no backoff."""
    (tmp_path / "debian").mkdir()
    monkeypatch.setenv("FMBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FMBENCH_DEBIAN_DIR", str(tmp_path / "debian"))
    monkeypatch.setenv("FMBENCH_DOWNLOAD_RETRIES", "2")
    monkeypatch.setenv("FMBENCH_DOWNLOAD_BACKOFF", "0")
    return tmp_path / "cache" / "fashion-mnist"


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert "Traceback" not in err and [l for l in lines if l.startswith("fmbench: error:")] == lines[-1:]
    return lines[-1]


def test_download_real_files_into_the_cache(real_data_dir, tmp_path, env, run_cli):
    mirror, empty = tmp_path / "mirror", tmp_path / "empty"
    mirror.mkdir(), empty.mkdir()
    for stem in sources.STEMS:
        shutil.copy(real_data_dir / f"{stem}.gz", mirror)
    with serve(empty) as (bad_url, bad), serve(mirror) as (url, good):
        code, out, err = run_cli("data", "--mirror", bad_url, "--mirror", url)  # a 404 mirror first
    assert code == 0, err
    assert f"source:   download from {url} into cache {env}\n" in out
    assert out.count("6,000") == 10 and out.count("1,000") == 10
    assert len(bad.requests) == 4  # one 404 per file, not retried
    assert sorted(good.requests) == sorted(f"/{s}.gz" for s in sources.STEMS)
    key = sources.dataset_key(sources.SHA256)
    assert _leftovers(env) == sorted([f"{s}.gz" for s in sources.STEMS]
                                     + [f"tensors-{key}.safetensors", "verified.json"])
    for stem in sources.STEMS:
        data = gzip.decompress((env / f"{stem}.gz").read_bytes())
        assert hashlib.sha256(data).hexdigest() == sources.SHA256[stem]

    code, out, _ = run_cli("data", "--no-download")  # now found in the cache, no server needed
    assert code == 0 and f"source:   cache {env}\n" in out


def test_only_missing_files_are_downloaded(real_data_dir, tmp_path, env):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    env.mkdir(parents=True)
    for stem in sources.STEMS:
        shutil.copy(real_data_dir / f"{stem}.gz", env if "images" in stem else mirror)
    with serve(mirror) as (url, server):
        ds = load_fashion_mnist(mirrors=[url])
    assert sorted(server.requests) == ["/t10k-labels-idx1-ubyte.gz", "/train-labels-idx1-ubyte.gz"]
    assert ds.source == f"download from {url} into cache {env}" and len(ds.train_labels) == 60000


def _corrupt_content(gz: bytes) -> bytes:
    data = bytearray(gzip.decompress(gz))
    data[100] ^= 0x01  # a valid IDX file with one flipped bit: only the hash can tell
    return gzip.compress(bytes(data))


def _corrupt_stream(gz: bytes) -> bytes:
    mid = len(gz) // 2
    return gz[:mid] + bytes([gz[mid] ^ 0xFF]) + gz[mid + 1:]


@pytest.mark.parametrize("corrupt, message, attempts", [
    (_corrupt_content, rf"SHA-256 mismatch for {FIRST}: got [0-9a-f]{{64}}, expected {sources.SHA256[FIRST]}", 1),
    (_corrupt_stream, r"truncated or corrupt gzip", 2),
], ids=["hash mismatch", "corrupt gzip"])
def test_corrupt_download_never_lands(corrupt, message, attempts, real_data_dir, tmp_path, env, run_cli):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / f"{FIRST}.gz").write_bytes(corrupt((real_data_dir / f"{FIRST}.gz").read_bytes()))
    with serve(mirror) as (url, server):
        with pytest.raises(DataError, match=rf"^could not download {FIRST}.gz: {url} \({message}"):
            load_fashion_mnist(mirrors=[url])
        code, _, err = run_cli("data", "--mirror", url)
    assert len(server.requests) == 2 * attempts  # a hash mismatch is not retried, a broken stream is
    assert code == 2 and f"could not download {FIRST}.gz: {url}" in _one_error_line(err)
    assert _leftovers(env) == []  # no file, no temporary file


def test_404_names_every_mirror_tried(tmp_path, env, run_cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    with serve(empty) as (url1, s1), serve(empty) as (url2, s2):
        code, out, err = run_cli("data", "--mirror", url1, "--mirror", url2)
    assert code == 2 and out == ""
    assert _one_error_line(err) == (f"fmbench: error: could not download {FIRST}.gz: "
                                    f"{url1} (HTTP 404 File not found); {url2} (HTTP 404 File not found)")
    assert len(s1.requests) == len(s2.requests) == 1
    assert _leftovers(env) == []


def test_server_hanging_up_midway(env, run_cli, monkeypatch):
    with serve(handler=_HangUp) as (url, server):
        monkeypatch.setenv("FMBENCH_MIRRORS", url)  # the mirrors may also come from the environment
        code, _, err = run_cli("data")
    assert code == 2 and len(server.requests) == 2
    assert _one_error_line(err) == (f"fmbench: error: could not download {FIRST}.gz: "
                                    f"{url} (connection closed after 1000 of 100000 bytes)")
    assert _leftovers(env) == []


def test_server_that_never_answers_times_out(env, monkeypatch):
    monkeypatch.setenv("FMBENCH_DOWNLOAD_TIMEOUT", "0.3")
    monkeypatch.setenv("FMBENCH_DOWNLOAD_RETRIES", "1")
    with serve(handler=_Silent) as (url, server):
        with pytest.raises(DataError, match=rf"^could not download {FIRST}.gz: {url} \(.*timed out"):
            load_fashion_mnist(mirrors=[url])
    assert len(server.requests) == 1 and _leftovers(env) == []


def test_connection_refused(env):
    with pytest.raises(DataError, match=r"http://127.0.0.1:9/ \(cannot connect: .*\)$"):
        load_fashion_mnist(mirrors=["http://127.0.0.1:9/"])


def test_no_download_never_contacts_a_mirror(tmp_path, env, run_cli):
    with serve(tmp_path) as (url, server):
        code, _, err = run_cli("data", "--mirror", url, "--no-download")
    assert code == 2 and server.requests == [] and "downloading is off" in err


@pytest.mark.parametrize("bad", ["ftp://127.0.0.1/", "file:///etc/"])
def test_mirror_must_be_http(bad, env, run_cli):
    code, _, err = run_cli("data", "--mirror", bad)
    assert code == 2 and err == f"fmbench: error: mirror {bad!r} is not an http:// or https:// URL\n"


def test_bad_retry_setting(env, monkeypatch, run_cli):
    monkeypatch.setenv("FMBENCH_DOWNLOAD_RETRIES", "lots")
    code, _, err = run_cli("data", "--mirror", "http://127.0.0.1:9/")
    assert code == 2 and err == "fmbench: error: FMBENCH_DOWNLOAD_RETRIES='lots' is not a valid int\n"


def test_cache_that_cannot_be_written_is_a_clear_error(tmp_path, env, run_cli):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, _, err = run_cli("data", "--cache-dir", blocker, "--mirror", "http://127.0.0.1:9/")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"fmbench: error: cannot write to the cache directory {blocker / 'fashion-mnist'}")
