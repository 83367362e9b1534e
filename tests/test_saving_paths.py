"""Where save writes: through symlinks to their target (atomically, the link kept), never over a
directory, device, pipe or socket, and clear errors for an empty path and for directories that
refuse writes (naming the path and the directory, never the temporary file)."""
import errno
import os
import stat
import tempfile

import numpy as np
import pytest

import nanonet as nn
from nanonet import layers as L

# symlinks, FIFOs and device nodes as POSIX has them
pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file semantics")


def _model(seed):
    nn.set_seed(seed)
    return nn.Sequential([L.Input((4,)), L.Dense(3)])


def _same_weights(model, path):
    for a, b in zip(model.get_weights(), nn.load_model(path).get_weights()):
        np.testing.assert_array_equal(a, b)


def _tmp_files(directory):
    return [n for n in os.listdir(directory) if n.endswith(".tmp")]


@pytest.mark.parametrize("save", ["save", "save_weights"])
def test_symlink_is_written_through_to_its_target(tmp_path, save):
    real_dir = tmp_path / "real"
    link_dir = tmp_path / "links"
    real_dir.mkdir()
    link_dir.mkdir()
    target = real_dir / "model.nnet"
    link = link_dir / "latest.nnet"
    _model(1).save(target)
    os.symlink(os.path.relpath(target, link_dir), link)
    target.chmod(0o600)
    new = _model(2)
    getattr(new, save)(link)
    assert link.is_symlink() and os.readlink(link) == os.path.relpath(target, link_dir)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # the target's mode is kept
    if save == "save":
        _same_weights(new, target)
    else:
        loaded = _model(3)
        loaded.load_weights(target)
        for a, b in zip(new.get_weights(), loaded.get_weights()):
            np.testing.assert_array_equal(a, b)
    # the temporary file went beside the target, and nothing is left behind anywhere
    assert sorted(os.listdir(real_dir)) == ["model.nnet"]
    assert sorted(os.listdir(link_dir)) == ["latest.nnet"]


def test_symlink_chain_and_dangling_symlink(tmp_path):
    target = tmp_path / "t.nnet"
    (tmp_path / "b.nnet").symlink_to("t.nnet")       # dangling: t.nnet does not exist yet
    (tmp_path / "a.nnet").symlink_to("b.nnet")
    model = _model(4)
    model.save(tmp_path / "a.nnet")
    assert (tmp_path / "a.nnet").is_symlink() and (tmp_path / "b.nnet").is_symlink()
    assert target.is_file() and not target.is_symlink()
    _same_weights(model, target)


def test_symlink_into_a_missing_directory_is_refused(tmp_path):
    link = tmp_path / "m.nnet"
    link.symlink_to(tmp_path / "gone" / "m.nnet")
    with pytest.raises(FileNotFoundError, match="does not exist.*symlink"):
        _model(1).save(link)
    assert link.is_symlink()


def test_symlink_loop_is_an_error_naming_the_path(tmp_path):
    a, b = tmp_path / "a.nnet", tmp_path / "b.nnet"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(OSError, match="save: cannot save to .*a.nnet") as e:
        _model(1).save(a)
    assert e.value.errno == errno.ELOOP
    assert a.is_symlink() and b.is_symlink()


def test_overwrite_false_refuses_an_existing_symlink(tmp_path):
    link = tmp_path / "m.nnet"
    link.symlink_to("nothing-yet.nnet")
    with pytest.raises(FileExistsError, match="overwrite=False"):
        _model(1).save(link, overwrite=False)
    assert not (tmp_path / "nothing-yet.nnet").exists()


def test_fifo_is_refused_and_kept(tmp_path):
    fifo = tmp_path / "pipe.nnet"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"named pipe \(FIFO\).*not a regular file"):
        _model(1).save(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert _tmp_files(tmp_path) == []


def test_symlink_to_a_device_is_refused(tmp_path):
    link = tmp_path / "null.nnet"
    link.symlink_to(os.devnull)
    with pytest.raises(ValueError, match="character device.*points to '/dev/null'"):
        _model(1).save(link)
    assert link.is_symlink() and stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_device_node_is_refused(tmp_path):
    dev = tmp_path / "null.nnet"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a second /dev/null
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot create a device node here ({e})")
    with pytest.raises(ValueError, match="character device"):
        _model(1).save_weights(dev)
    assert stat.S_ISCHR(os.lstat(dev).st_mode)


def test_symlink_to_a_directory_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "m.nnet").symlink_to("d")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        _model(1).save(tmp_path / "m.nnet")


@pytest.mark.parametrize("fn", ["save", "save_weights"])
def test_empty_path(fn):
    with pytest.raises(ValueError, match=rf"{fn}: filepath must be a non-empty path.*got ''"):
        getattr(_model(1), fn)("")


@pytest.mark.parametrize("load", ["load_model", "load_weights"])
def test_empty_path_when_loading(load):
    with pytest.raises(ValueError, match=rf"{load}: filepath must be a non-empty path"):
        nn.load_model("") if load == "load_model" else _model(1).load_weights("")


def test_trailing_separator(tmp_path):
    with pytest.raises(ValueError, match="must name a file.*path separator"):
        _model(1).save(str(tmp_path / "new") + os.sep)


def _unwritable_directory(tmp_path):
    """A directory in which creating a file fails with EACCES, for root too where possible."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return str(d)
    for d in ("/sys", "/sys/kernel"):  # sysfs refuses new files even to root
        try:
            fd, name = tempfile.mkstemp(dir=d)
        except PermissionError:
            return d
        except OSError:
            continue
        os.close(fd)
        os.unlink(name)
    pytest.skip("no directory refuses writes to root here")


def test_read_only_directory_error_names_the_path_not_the_temp_file(tmp_path):
    d = _unwritable_directory(tmp_path)
    path = os.path.join(d, "m.nnet")
    with pytest.raises(PermissionError) as e:
        _model(1).save(path)
    msg = str(e.value)
    assert e.value.errno == errno.EACCES
    assert f"save: cannot save {path!r}" in msg and f"directory {d!r}" in msg, msg
    assert ".tmp" not in msg and e.value.__cause__ is None and e.value.__suppress_context__


def test_read_only_directory_simulated(tmp_path, monkeypatch):
    # The same as above wherever the machine has no unwritable directory: mkstemp refuses.
    def refuse(prefix="", suffix="", dir=None):
        name = os.path.join(dir, prefix + "x1y2z3" + suffix)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    path = str(tmp_path / "m.nnet")
    with pytest.raises(PermissionError, match=r"save_weights: cannot save .*m.nnet'.*directory "
                                              r".*\(Permission denied\)") as e:
        _model(1).save_weights(path)
    assert "x1y2z3" not in str(e.value)
    assert not os.path.exists(path)


def test_failed_rename_error_names_the_path_not_the_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "m.nnet"
    old = _model(1)
    old.save(path)

    def refuse(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), src, None, dst)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match=r"save: cannot save .*m.nnet': Read-only file system$"):
        _model(2).save(path)
    monkeypatch.undo()
    assert _tmp_files(tmp_path) == []
    _same_weights(old, path)
