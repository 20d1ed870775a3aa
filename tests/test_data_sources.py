"""Where the data comes from (search order), SHA-256 verification and the remembered verification."""

from __future__ import annotations

import gzip
import hashlib
import os
import time

import numpy as np
import pytest
import torch

from fmbench import CLASSES
from fmbench.data import load_fashion_mnist, sources
from fmbench.data.idx import idx_bytes
from fmbench.errors import DataError



def _no_hashing(monkeypatch):
    def fail(data):
        raise AssertionError("hashed again although the verification was remembered")
    monkeypatch.setattr(sources, "sha256_bytes", fail)


# --- search order -------------------------------------------------------------------------

def test_explicit_dir_with_missing_files_is_an_error_not_a_fall_through(tmp_path, make_tiny_idx, monkeypatch,
                                                                        run_cli):
    make_tiny_idx(tmp_path / "cache" / "fashion-mnist")  # a complete cache that must NOT be used
    monkeypatch.setenv("FMBENCH_CACHE_DIR", str(tmp_path / "cache"))
    partial = make_tiny_idx(tmp_path / "partial")
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    (partial / "train-images-idx3-ubyte.gz").unlink()
    message = (f"data directory {partial} lacks train-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]")
    with pytest.raises(DataError) as info:
        load_fashion_mnist(partial, verify=False)
    assert str(info.value) == message
    code, out, err = run_cli("data", "--data-dir", partial, "--no-verify")
    assert (code, out, err) == (2, "", f"fmbench: error: {message}\n")


def test_explicit_dir_that_does_not_exist(tmp_path, run_cli):
    code, _, err = run_cli("data", "--data-dir", tmp_path / "nope")
    assert code == 2
    assert err == f"fmbench: error: data directory {tmp_path / 'nope'} does not exist or is not a directory\n"


def test_env_data_dir(tiny_idx_dir, monkeypatch):
    monkeypatch.setenv("FMBENCH_DATA_DIR", str(tiny_idx_dir))
    ds = load_fashion_mnist(verify=False)
    assert ds.source == f"explicit directory {tiny_idx_dir} (FMBENCH_DATA_DIR)"


def test_search_order_cache_then_debian(tmp_path, make_tiny_idx, monkeypatch):
    cache, debian = tmp_path / "cache", tmp_path / "debian"
    make_tiny_idx(debian, n_train=50)
    monkeypatch.setenv("FMBENCH_CACHE_DIR", str(cache))
    monkeypatch.setenv("FMBENCH_DEBIAN_DIR", str(debian))
    ds = load_fashion_mnist(verify=False, download=False)
    assert ds.source == f"Debian package dataset-fashion-mnist ({debian})" and len(ds.train_labels) == 50

    make_tiny_idx(cache / "fashion-mnist", n_train=30)
    ds = load_fashion_mnist(verify=False, download=False)
    assert ds.source == f"cache {cache / 'fashion-mnist'}" and len(ds.train_labels) == 30

    explicit = make_tiny_idx(tmp_path / "explicit", n_train=20)
    ds = load_fashion_mnist(explicit, verify=False, download=False)
    assert ds.source == f"explicit directory {explicit}" and len(ds.train_labels) == 20

    # --cache-dir beats FMBENCH_CACHE_DIR
    ds = load_fashion_mnist(verify=False, download=False, cache_dir=tmp_path / "other")
    assert ds.source.startswith("Debian package")


def test_cache_root_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("FMBENCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sources.cache_root() == tmp_path / "xdg" / "fmbench" / "fashion-mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert sources.cache_root() == tmp_path / "home" / ".cache" / "fmbench" / "fashion-mnist"


def test_nothing_found_and_no_download_says_how_to_get_the_data(tmp_path, run_cli):
    code, out, err = run_cli("data", "--no-download", "--cache-dir", tmp_path)
    assert code == 2 and out == "" and err.count("\n") == 1
    for hint in ("Fashion-MNIST not found", str(tmp_path / "fashion-mnist"), "dataset-fashion-mnist",
                 "--data-dir", "FMBENCH_DATA_DIR", "drop --no-download"):
        assert hint in err


# --- verification ------------------------------------------------------------------------

def test_synthetic_data_fails_verification(tiny_idx_dir, tmp_path, run_cli):
    actual = hashlib.sha256(gzip.decompress((tiny_idx_dir / "train-images-idx3-ubyte.gz").read_bytes())).hexdigest()
    message = (f"{tiny_idx_dir / 'train-images-idx3-ubyte.gz'}: SHA-256 of the decompressed "
               f"train-images-idx3-ubyte is {actual}, expected {sources.SHA256['train-images-idx3-ubyte']}")
    with pytest.raises(DataError, match="^" + message.replace(".", r"\.")):
        load_fashion_mnist(tiny_idx_dir, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # a file that fails verification is never used or cached
    code, out, err = run_cli("data", "--data-dir", tiny_idx_dir, "--cache-dir", tmp_path / "cache")
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith(f"fmbench: error: {message}")


def test_remembered_verification_and_its_invalidation(tiny_idx_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_fashion_mnist(tiny_idx_dir, verify=False, cache_dir=cache)
    key = sources.dataset_key(first.sha256)
    assert sorted(p.name for p in (cache / "fashion-mnist").iterdir()) == [f"tensors-{key}.safetensors",
                                                                          "verified.json"]
    with monkeypatch.context() as m:
        _no_hashing(m)
        second = load_fashion_mnist(tiny_idx_dir, verify=False, cache_dir=cache)
    assert torch.equal(first.train_images, second.train_images) and second.sha256 == first.sha256
    assert second.test_hash == first.test_hash

    # a changed file (new content, size and mtime) is hashed again, never served from the cache
    labels = np.zeros(20, np.uint8)
    (tiny_idx_dir / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    calls = []
    real_hash = sources.sha256_bytes
    monkeypatch.setattr(sources, "sha256_bytes", lambda d: calls.append(1) or real_hash(d))
    third = load_fashion_mnist(tiny_idx_dir, verify=False, cache_dir=cache)
    assert len(calls) >= 4 and third.test_labels.tolist() == [0] * 20
    assert third.test_hash != first.test_hash


def test_damaged_tensor_cache_is_rebuilt(tiny_idx_dir, tmp_path):
    cache = tmp_path / "cache"
    first = load_fashion_mnist(tiny_idx_dir, verify=False, cache_dir=cache)
    (tensors,) = (cache / "fashion-mnist").glob("tensors-*.safetensors")
    tensors.write_bytes(tensors.read_bytes()[:100])
    again = load_fashion_mnist(tiny_idx_dir, verify=False, cache_dir=cache)
    assert torch.equal(first.train_images, again.train_images)
    assert tensors.stat().st_size > 100  # rewritten


def test_unwritable_cache_is_skipped(tiny_idx_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    ds = load_fashion_mnist(tiny_idx_dir, verify=False, cache_dir=blocker)
    assert len(ds.train_labels) == 40
    assert "note: not caching" in capsys.readouterr().err


# --- the real files ------------------------------------------------------------------------

def test_real_data_loads_verified_and_is_remembered(real_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FMBENCH_CACHE_DIR", str(tmp_path / "cache"))
    start = time.perf_counter()
    ds = load_fashion_mnist(real_data_dir, download=False)
    first_s = time.perf_counter() - start
    assert ds.source == f"explicit directory {real_data_dir}"
    assert ds.train_images.shape == (60000, 28, 28) and ds.train_images.dtype == torch.uint8
    assert ds.test_images.shape == (10000, 28, 28) and ds.test_images.dtype == torch.uint8
    assert ds.train_labels.dtype == torch.int64 and ds.test_labels.dtype == torch.int64
    assert ds.train_labels.bincount().tolist() == [6000] * 10
    assert ds.test_labels.bincount().tolist() == [1000] * 10
    assert ds.classes == CLASSES and len(ds.classes) == 10
    assert ds.sha256 == sources.SHA256
    expected_test_hash = hashlib.sha256((sources.SHA256["t10k-images-idx3-ubyte"]
                                         + sources.SHA256["t10k-labels-idx1-ubyte"]).encode()).hexdigest()
    assert ds.test_hash == expected_test_hash

    cache = tmp_path / "cache" / "fashion-mnist"
    assert (cache / "verified.json").is_file()
    assert (cache / f"tensors-{sources.dataset_key(sources.SHA256)}.safetensors").is_file()
    assert not list(real_data_dir.glob("*.safetensors")) and not list(real_data_dir.glob("*.json"))

    _no_hashing(monkeypatch)
    monkeypatch.setattr("fmbench.data.idx.read_idx_bytes", lambda p: pytest.fail("re-read " + str(p)))
    start = time.perf_counter()
    again = load_fashion_mnist(real_data_dir, download=False)
    second_s = time.perf_counter() - start
    assert torch.equal(again.train_images, ds.train_images) and torch.equal(again.test_labels, ds.test_labels)
    assert again.sha256 == ds.sha256
    assert second_s < 0.5, f"remembered load took {second_s:.2f} s (first {first_s:.2f} s)"


def test_real_debian_location(real_data_dir, real_dataset, monkeypatch, session_cache):
    monkeypatch.setenv("FMBENCH_DEBIAN_DIR", str(real_data_dir))
    ds = load_fashion_mnist(download=False, cache_dir=session_cache)
    assert ds.source == f"Debian package dataset-fashion-mnist ({real_data_dir})"
    assert ds.test_hash == real_dataset.test_hash


def test_real_file_with_one_changed_label_fails_verification(real_data_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        os.symlink(real_data_dir / f"{stem}.gz", data / f"{stem}.gz")
    labels = bytearray(gzip.decompress((real_data_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    labels[8] = (labels[8] + 1) % 10  # still a valid label: only the hash can tell
    (data / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(labels)))
    actual = hashlib.sha256(bytes(labels)).hexdigest()
    with pytest.raises(DataError, match=f"t10k-labels-idx1-ubyte.gz: SHA-256 .* is {actual}, expected "
                                        f"{sources.SHA256['t10k-labels-idx1-ubyte']}"):
        load_fashion_mnist(data, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("tensors-*"))
