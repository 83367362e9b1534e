"""nn.datasets.load_fashion_mnist and its IDX reader: Keras's return layout when Debian's
dataset-fashion-mnist is installed (skipped otherwise), and clear errors for missing, corrupt,
truncated or mislabelled files (written to tmp_path)."""
import gzip
import os

import numpy as np
import pytest

import nanonet as nn
from nanonet import datasets


def _idx(dims, body=None, type_byte=8):
    dims = tuple(dims)
    head = bytes([0, 0, type_byte, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    if body is None:
        body = bytes(int(np.prod(dims)))
    return head + body


def _write(folder, name, data):
    with gzip.open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def _fake_set(folder, n_train=60000, n_test=10000, labels=b"\x01"):
    _write(folder, "train-images-idx3-ubyte.gz", _idx((n_train, 28, 28)))
    _write(folder, "train-labels-idx1-ubyte.gz", _idx((n_train,), labels * n_train))
    _write(folder, "t10k-images-idx3-ubyte.gz", _idx((n_test, 28, 28)))
    _write(folder, "t10k-labels-idx1-ubyte.gz", _idx((n_test,), labels * n_test))


@pytest.mark.skipif(not os.path.isdir(datasets.FASHION_MNIST_DIR),
                    reason="apt-get install dataset-fashion-mnist")
def test_load_fashion_mnist_as_keras():
    (x, y), (xt, yt) = nn.datasets.load_fashion_mnist()
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert x.dtype == np.uint8 and y.dtype == np.uint8 and y.shape == (60000,)
    assert list(y[:10]) == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]  # Keras's first training labels
    np.testing.assert_array_equal(np.bincount(y), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(yt), [1000] * 10)


def test_missing_folder_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        nn.datasets.load_fashion_mnist(path=tmp_path)


def test_a_valid_fake_set_loads(tmp_path):
    _fake_set(tmp_path)
    (x, y), (xt, yt) = nn.datasets.load_fashion_mnist(path=tmp_path)
    assert x.shape == (60000, 28, 28) and set(np.unique(y)) == {1} and yt.shape == (10000,)


@pytest.mark.parametrize("data, match", [
    (_idx((3, 2), type_byte=9), "not an unsigned-byte IDX file"),
    (b"\x00\x00", "not an unsigned-byte IDX file"),
    (_idx((3, 2))[:-1], "truncated"),
    (_idx((3, 2)) + b"\x00", "longer than its header says"),
    (_idx((3, 2))[:9], "truncated inside its header"),
])
def test_read_idx_rejects_corrupt_files(tmp_path, data, match):
    p = tmp_path / "f.idx"
    p.write_bytes(data)
    with pytest.raises(ValueError, match=match):
        datasets.read_idx(p)


def test_read_idx_checks_rank_count_and_gzip(tmp_path):
    p = tmp_path / "f.idx"
    p.write_bytes(_idx((4, 2), bytes(range(8))))
    np.testing.assert_array_equal(datasets.read_idx(p), np.arange(8).reshape(4, 2))
    with pytest.raises(ValueError, match="holds a 2-D array; expected 3-D"):
        datasets.read_idx(p, ndim=3)
    with pytest.raises(ValueError, match="holds 4 items; expected 5"):
        datasets.read_idx(p, count=5)
    g = tmp_path / "bad.gz"
    g.write_bytes(gzip.compress(_idx((4, 2), bytes(8)))[:-12])
    with pytest.raises(ValueError, match="cannot read"):
        datasets.read_idx(g)


def test_wrong_counts_and_labels_are_refused(tmp_path):
    _fake_set(tmp_path, n_train=5)
    with pytest.raises(ValueError, match="holds 5 items; expected 60000"):
        nn.datasets.load_fashion_mnist(path=tmp_path)
    _fake_set(tmp_path, labels=b"\x0c")
    with pytest.raises(ValueError, match="label 12"):
        nn.datasets.load_fashion_mnist(path=tmp_path)
