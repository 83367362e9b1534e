"""Model files: ``model.save`` / ``nanonet.load_model`` and ``save_weights`` /
``load_weights``, for Sequential and graph models alike.

A model file is one zip archive (the suffix ``.nnet`` is recommended; any name works) whose
members are stored uncompressed:

    nanonet.json         the manifest, UTF-8 JSON: format name ("nanonet"), format version,
                         nanonet version, kind ("model" or "weights"), the architecture (each
                         layer's class name and get_config; for a graph model also, per call
                         site, the tensors it consumes as [layer name, node index, tensor
                         index], and the inputs and outputs), the compile settings (optimizer
                         config with its learning-rate schedule, loss, metrics), one entry per
                         array (member, role, layer, name, shape, dtype), the random state
                         training resumes from and, when the model has them, its
                         ``class_names`` (a list of strings; a preprocessing layer's
                         vocabulary is part of its config)
    weights/00000.npy    the model's weights in ``model.weights`` order (NumPy .npy, version 1.0)
                         (format version 1: Sequential, as nanonet 0.1 wrote and reads them;
                         version 2: graph models)
    optimizer/00000.npy  the optimizer's iteration count, then its slots, parameter by parameter

A weights file (``save_weights``) has the same layout without architecture, compile settings,
optimizer and random state.

What is saved comes from the layers' and optimizer's documented protocol only: ``get_config``,
``model.named_weights()``, ``get_rng_state`` / ``set_rng_state``, ``optimizer.slot_names`` /
``slot_variables`` / ``set_variables``. Loading builds the layers with
``layers.base.skip_initializers`` (zeros, no random stream drawn), then sets the weights.

Loading never executes code from the file: no pickle (every .npy member is read into memory and
decoded with ``allow_pickle=False`` after its header was checked), classes are looked up by name
in nanonet's registries (layers, optimizers, schedules, losses, metrics) and anything unknown is
an error. Before a member is read, the archive is checked: member names (no absolute paths, no
"..", no duplicates), member count, total uncompressed size and compression ratio (zip bombs),
encryption and compression method. Every array's shape, dtype and name must agree with the
manifest and with the rebuilt model; NaN or inf values are refused unless ``allow_nan=True``.
Every problem is a ValueError that names the file and the member.

Saving is atomic: the archive is written to a temporary file beside the target, flushed and
fsync'ed, renamed onto the target with ``os.replace``, and the directory is fsync'ed. If anything
fails the temporary file is removed and the previous file is untouched; a process killed mid-save
leaves the previous file intact (and possibly a stray ``.<name>.*.tmp`` beside it).
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import zipfile
import zlib
from typing import Any

import numpy as np

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "FORMAT",
           "FORMAT_VERSION", "MAX_MEMBERS", "MAX_TOTAL_BYTES", "MAX_COMPRESSION_RATIO"]

FORMAT = "nanonet"
FORMAT_VERSION = 2  # 1: Sequential files of 0.1 (still written for Sequential); 2: graph models
SUFFIX = ".nnet"
MANIFEST = "nanonet.json"

# Limits checked before anything is read (zip bombs, hostile archives).
MAX_MEMBERS = 100_000
MAX_TOTAL_BYTES = 4 << 30          # sum of the declared uncompressed sizes
MAX_MANIFEST_BYTES = 64 << 20
MAX_COMPRESSION_RATIO = 100         # for members above _RATIO_MIN_BYTES (nanonet stores, ratio 1)
_RATIO_MIN_BYTES = 1 << 20
_NPY_HEADER_MAX = 10_000            # numpy's own limit on a .npy header
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # identical models give identical files
_ARRAY_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64")
_MEMBER_RE = re.compile(r"^(weights|optimizer)/[0-9]{5,9}\.npy$")


# -- helpers ------------------------------------------------------------------------------------
def _path(filepath, fn):
    try:
        path = os.fspath(filepath)
    except TypeError:
        raise TypeError(f"{fn}: filepath must be a str or os.PathLike; got "
                        f"{type(filepath).__name__}") from None
    if not path:
        raise ValueError(f"{fn}: filepath must be a non-empty path to a file; got {path!r}")
    return path


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _dumps(manifest, path, fn):
    try:
        return json.dumps(manifest, default=_json_default, allow_nan=False,
                          separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ValueError(f"{fn}: cannot write {path!r}: the model's configuration is not "
                         f"JSON-serialisable ({e})") from None


def _zinfo(name, size):
    info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    info.file_size = size
    return info


def _write_archive(f, manifest_bytes, arrays):
    """Write the zip into the open binary file f: the manifest, then each (member, array)."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr(_zinfo(MANIFEST, len(manifest_bytes)), manifest_bytes)
        for member, arr in arrays:
            arr = np.asarray(arr, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
            with zf.open(_zinfo(member, arr.nbytes + 256), "w") as fh:
                np.lib.format.write_array(fh, arr, version=(1, 0), allow_pickle=False)


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _os_error(e, message):
    """An OSError of e's class and errno with message instead of e's text (which may name a
    temporary file)."""
    try:
        return type(e)(e.errno, message) if e.errno is not None else type(e)(message)
    except TypeError:  # a subclass with another constructor
        return OSError(e.errno, message)


def _save_target(path, overwrite, fn):
    """The regular file that saving to path replaces: path itself, or the file a symlink at
    path points to (through any chain of links; it may not exist yet). Refuses directories,
    devices, pipes and sockets, a missing directory, and an existing file if not overwrite."""
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{fn}: {path!r} exists and overwrite=False")
    target = os.path.realpath(path) if os.path.islink(path) else path
    via = f" (the symlink {path!r} points to {target!r})" if target != path else ""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as e:  # ELOOP: a symlink cycle; EACCES on a parent; ...
        raise _os_error(e, f"{fn}: cannot save to {path!r}: {e.strerror or e}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{fn}: {path!r} is a directory{via}; pass a file path")
    if not os.path.basename(target):
        raise ValueError(f"{fn}: filepath must name a file; got {path!r}, which ends with a "
                         "path separator")
    if st is not None and not stat.S_ISREG(st.st_mode):
        kinds = ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                 (stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISSOCK, "socket"))
        kind = next((name for test, name in kinds if test(st.st_mode)), "special file")
        raise ValueError(f"{fn}: {path!r} is a {kind}{via}, not a regular file; refusing to "
                         "replace it (save to a regular file path)")
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{fn}: directory {directory!r} does not exist (saving "
                                f"{path!r}{via})")
    return target, directory, 0o644 if st is None else stat.S_IMODE(st.st_mode)


def _atomic_write(path, write, overwrite, fn):
    """write(f) into a temporary file beside path, fsync it, rename it onto path, fsync the
    directory; on any error remove the temporary file and leave path as it was. A symlink at
    path is written through: the temporary file goes beside its target, which is replaced and
    the link kept. Directories, devices, pipes and sockets are refused; OSErrors (a read-only
    directory, a full disk) name path and the directory, never the temporary file."""
    target, directory, mode = _save_target(path, overwrite, fn)
    via = f" (the target of the symlink {path!r})" if target != path else ""
    try:
        import tempfile
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp",
                                   dir=directory)
    except OSError as e:
        raise _os_error(e, f"{fn}: cannot save {target!r}{via}: cannot create a file in "
                           f"directory {directory!r} ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise _os_error(e, f"{fn}: cannot save {target!r}{via}: {e.strerror or e}"
                            ) from None
        raise
    _fsync_dir(directory)


# -- what gets saved ----------------------------------------------------------------------------
def _weight_entries(model):
    """(manifest entries, [(member, array)]) for every weight, in model.weights order."""
    entries, arrays = [], []
    for layer, w, name in model.named_weights():
        member = f"weights/{len(arrays):05d}.npy"
        entries.append({"member": member, "role": "weight", "layer": layer.name,
                        "layer_class": type(layer).__name__, "name": name,
                        "shape": list(w.shape), "dtype": w.dtype.name})
        arrays.append((member, w))
    return entries, arrays


def _optimizer_config(optimizer, fn):
    from . import optimizers as _optimizers
    config = _optimizers.serialize(optimizer)
    schedule = optimizer.learning_rate_schedule
    if schedule is not None:
        from . import schedules as _schedules
        try:
            config["config"]["learning_rate"] = _schedules.serialize(schedule)
        except (TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{fn}: the optimizer's learning_rate {schedule!r} is not a "
                             f"nanonet.schedules schedule, so it cannot be saved ({e}); use a "
                             "schedule from nanonet.schedules or save_weights") from None
    return config


def _optimizer_entries(model, weight_arrays, fn):
    """Entries and arrays for the optimizer's iteration count and every slot."""
    optimizer = model.optimizer
    index = {id(arr): i for i, (_, arr) in enumerate(weight_arrays)}
    entries = [{"member": "optimizer/00000.npy", "role": "iterations", "shape": [],
                "dtype": "int64"}]
    arrays = [("optimizer/00000.npy", np.array(optimizer.iterations, dtype=np.int64))]
    slot_names = list(optimizer.slot_names)
    for param, slots in optimizer.slot_variables():
        i = index.get(id(param))
        if i is None:
            raise ValueError(f"{fn}: the optimizer holds state for an array of shape "
                             f"{param.shape} that is not a weight of model {model.name!r} (was "
                             "the optimizer shared with another model?)")
        if len(slots) != len(slot_names):
            raise ValueError(f"{fn}: the optimizer has {len(slots)} slots for weights[{i}]; "
                             f"expected {len(slot_names)} ({slot_names})")
        for sname, s in zip(slot_names, slots):
            member = f"optimizer/{len(arrays):05d}.npy"
            entries.append({"member": member, "role": "slot", "weight": i, "slot": sname,
                            "shape": list(s.shape), "dtype": s.dtype.name})
            arrays.append((member, s))
    return entries, arrays


def _base_manifest(model, kind):
    from . import __version__
    shape = model.input_shape
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
            "nanonet_version": __version__, "built": bool(model.built),
            "input_shape": None if shape is None else list(shape)}


def save_model(model: Any, filepath: str | os.PathLike[str], overwrite: bool = True) -> Any:
    """Write model (architecture, weights, compile settings, optimizer state, random state)
    to one file, atomically. See the module docstring for the layout."""
    fn = "save"
    path = _path(filepath, fn)
    refuse_keras_name(path, fn)
    manifest = _base_manifest(model, "model")
    manifest["model"] = {"class_name": type(model).__name__, "config": model.get_config()}
    if type(model).__name__ != "Sequential":
        manifest["format_version"] = 2  # graph models: nanonet >= 0.2 reads them
    entries, arrays = _weight_entries(model)
    compile_config = None
    if model.compiled:
        loss, loss_weights = model.compiled_loss.get_config()
        compile_config = {
            "optimizer": _optimizer_config(model.optimizer, fn),
            "loss": loss, "metrics": model.compiled_metrics.get_config()}
        if loss_weights is not None:
            compile_config["loss_weights"] = loss_weights
        opt_entries, opt_arrays = _optimizer_entries(model, arrays, fn)
        entries += opt_entries
        arrays += opt_arrays
    manifest["compile"] = compile_config
    manifest["rng"] = {"seed": getattr(model, "_train_seed", None),
                       "layers": model.get_rng_state()}
    class_names = getattr(model, "class_names", None)
    if class_names is not None:  # absent in files without labels (and in older files)
        manifest["class_names"] = class_names
    manifest["arrays"] = entries
    data = _dumps(manifest, path, fn)
    _atomic_write(path, lambda f: _write_archive(f, data, arrays), overwrite, fn)


def save_weights(model: Any, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
    """Write the model's weights alone (no architecture, optimizer or compile settings)."""
    fn = "save_weights"
    path = _path(filepath, fn)
    refuse_keras_name(path, fn)
    if not model.built:
        raise ValueError(f"{fn}: model {model.name!r} is not built, so it has no weights yet; "
                         "build it (or run it on data) first")
    if path.lower().endswith(".safetensors"):
        from .interchange.weights import safetensors_bytes
        data = safetensors_bytes(model)
        _atomic_write(path, lambda f: f.write(data), overwrite, fn)
        return
    manifest = _base_manifest(model, "weights")
    entries, arrays = _weight_entries(model)
    manifest["arrays"] = entries
    data = _dumps(manifest, path, fn)
    _atomic_write(path, lambda f: _write_archive(f, data, arrays), overwrite, fn)


_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def refuse_keras_name(path: Any, fn: Any) -> Any:
    """ValueError for a file name of Keras's formats (.keras, .h5, .weights.h5): nanonet writes
    its own zip (.nnet), which under those names would look like a Keras file and is not."""
    lower = os.fspath(path).lower()
    suffix = next((s for s in _KERAS_SUFFIXES if lower.endswith(s)), None)
    if suffix is None:
        return
    stem = os.fspath(path)[:-len(suffix)]
    if stem.lower().endswith(".weights"):
        stem = stem[:-len(".weights")]
    raise ValueError(f"{fn}: {path!r} names a Keras {suffix} file, but nanonet writes its own "
                     f"format (a zip archive, suffix {SUFFIX}), not Keras files; save to "
                     f"{stem + SUFFIX!r} instead. Keras .keras and .h5 files can be read, not "
                     "written")


# -- reading ------------------------------------------------------------------------------------
def _unsafe_name(name):
    if not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name or ":" in name:
        return True
    return any(part in ("", ".", "..") for part in name.split("/"))


class _Archive:
    """An opened, checked model archive: the manifest and the members' ZipInfo by name."""

    def __init__(self, path, fn):
        self.path = path
        self.fn = fn
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{fn}: no such file: {path!r}") from None
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(f"{fn}: {path!r} is a directory, not a model file")
        if st.st_size > MAX_TOTAL_BYTES + MAX_MANIFEST_BYTES:
            raise self.error(f"the file is {st.st_size} bytes, over the limit of "
                             f"{MAX_TOTAL_BYTES + MAX_MANIFEST_BYTES}")
        try:
            self.zf = zipfile.ZipFile(path, "r")
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError,
                NotImplementedError) as e:
            raise self.error(f"not a zip archive, or truncated or corrupt ({e})") from None
        try:
            self._check_members()
            self.manifest = self._read_manifest()
        except BaseException:
            self.zf.close()
            raise

    def error(self, message, member=None):
        where = f" (member {member!r})" if member is not None else ""
        return ValueError(f"{self.fn}: {self.path!r} is not a valid nanonet file{where}: "
                          f"{message}")

    def close(self):
        self.zf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_members(self):
        infos = self.zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise self.error(f"it has {len(infos)} members, over the limit of {MAX_MEMBERS}")
        self.infos = {}
        total = 0
        for info in infos:
            name = info.filename
            if _unsafe_name(name):
                raise self.error("unsafe member name (absolute path, '..', backslash or empty "
                                 "component)", name)
            if name in self.infos:
                raise self.error("duplicate member name", name)
            if info.flag_bits & 0x1:
                raise self.error("encrypted members are not supported", name)
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise self.error(f"unsupported compression method {info.compress_type} (only "
                                 "stored or deflated)", name)
            if info.file_size > _RATIO_MIN_BYTES and \
                    info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
                ratio = info.file_size / max(info.compress_size, 1)
                raise self.error(f"compression ratio {ratio:.0f} exceeds "
                                 f"{MAX_COMPRESSION_RATIO} ({info.file_size} bytes from "
                                 f"{info.compress_size}); refusing a possible zip bomb", name)
            total += info.file_size
            if total > MAX_TOTAL_BYTES:
                raise self.error(f"the members' uncompressed sizes add up to more than "
                                 f"{MAX_TOTAL_BYTES} bytes; refusing a possible zip bomb")
            self.infos[name] = info

    def read(self, name, limit):
        info = self.infos.get(name)
        if info is None:
            raise self.error("member is missing", name)
        if info.file_size > limit:
            raise self.error(f"member is {info.file_size} bytes; expected at most {limit}", name)
        try:
            data = self.zf.read(info)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                NotImplementedError) as e:
            raise self.error(f"cannot read the member: corrupt or truncated ({e})",
                             name) from None
        if len(data) != info.file_size:
            raise self.error(f"member holds {len(data)} bytes; the directory says "
                             f"{info.file_size}", name)
        return data

    def _read_manifest(self):
        if MANIFEST not in self.infos:
            raise self.error(f"no {MANIFEST!r} member: this is not a nanonet model file")
        raw = self.read(MANIFEST, MAX_MANIFEST_BYTES)
        try:
            manifest = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise self.error(f"the manifest is not valid JSON ({e})", MANIFEST) from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
            raise self.error(f"wrong format magic: expected format {FORMAT!r}; got {got!r}",
                             MANIFEST)
        version = manifest.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise self.error(f"format_version must be an int; got {version!r}", MANIFEST)
        if not 1 <= version <= FORMAT_VERSION:
            raise self.error(f"unsupported format version {version}; this nanonet reads "
                             f"versions 1 to {FORMAT_VERSION} (upgrade nanonet to load it)",
                             MANIFEST)
        if manifest.get("kind") not in ("model", "weights"):
            raise self.error(f"kind must be 'model' or 'weights'; got {manifest.get('kind')!r}",
                             MANIFEST)
        self._check_entries(manifest)
        return manifest

    def _check_entries(self, manifest):
        entries = manifest.get("arrays")
        if not isinstance(entries, list):
            raise self.error("'arrays' must be a list", MANIFEST)
        seen = set()
        for k, e in enumerate(entries):
            if not isinstance(e, dict) or not isinstance(e.get("member"), str):
                raise self.error(f"arrays[{k}] must be an object with a 'member'", MANIFEST)
            member = e["member"]
            if not _MEMBER_RE.match(member) or member in seen:
                raise self.error(f"arrays[{k}] names an invalid or repeated member {member!r}",
                                 MANIFEST)
            seen.add(member)
            shape, dtype = e.get("shape"), e.get("dtype")
            if not isinstance(shape, list) or len(shape) > 32 or any(
                    isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
                raise self.error(f"arrays[{k}] has an invalid shape {shape!r}", MANIFEST)
            if dtype not in _ARRAY_DTYPES:
                raise self.error(f"arrays[{k}] has an unsupported dtype {dtype!r}", MANIFEST)
            if e.get("role") not in ("weight", "iterations", "slot"):
                raise self.error(f"arrays[{k}] has an unknown role {e.get('role')!r}", MANIFEST)
            if member not in self.infos:
                raise self.error(f"member is missing (listed as arrays[{k}] in the manifest)",
                                 member)
        extra = sorted(set(self.infos) - seen - {MANIFEST})
        if extra:
            raise self.error("member is not listed in the manifest", extra[0])

    def entries(self, role):
        return [e for e in self.manifest["arrays"] if e["role"] == role]

    def array(self, entry, allow_nan, what):
        """Read, check and decode the .npy member of a manifest entry."""
        member = entry["member"]
        shape = tuple(entry["shape"])
        dtype = np.dtype(entry["dtype"])
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > MAX_TOTAL_BYTES:
            raise self.error(f"the manifest declares {nbytes} bytes for {what}", member)
        info = self.infos[member]
        if info.file_size < nbytes:
            raise self.error(f"member is {info.file_size} bytes, too short for {what} of shape "
                             f"{shape} and dtype {dtype.name} ({nbytes} bytes of data)", member)
        raw = self.read(member, nbytes + _NPY_HEADER_MAX + 16)
        buf = io.BytesIO(raw)
        try:
            version = np.lib.format.read_magic(buf)
            if version == (1, 0):
                hshape, fortran, hdtype = np.lib.format.read_array_header_1_0(buf)
            elif version == (2, 0):
                hshape, fortran, hdtype = np.lib.format.read_array_header_2_0(buf)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, SyntaxError, TypeError, EOFError) as e:
            raise self.error(f"not a valid .npy array ({e})", member) from None
        if hdtype.hasobject or hdtype.fields is not None or hdtype.subdtype is not None:
            raise self.error(f"the array holds Python objects or records (dtype {hdtype}); "
                             "refusing to unpickle", member)
        if hdtype.name != dtype.name or tuple(hshape) != shape:
            raise self.error(f"{what} must have shape {shape} and dtype {dtype.name} as the "
                             f"manifest says; the .npy header has shape {tuple(hshape)} and "
                             f"dtype {hdtype.name}", member)
        if len(raw) - buf.tell() != nbytes:
            raise self.error(f"the .npy data of {what} is {len(raw) - buf.tell()} bytes; "
                             f"expected {nbytes}", member)
        try:
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise self.error(f"cannot decode the array ({e})", member) from None
        if arr.dtype.kind == "f" and not allow_nan and not np.isfinite(arr).all():
            raise self.error(f"{what} contains NaN or inf values; pass allow_nan=True to load "
                             "it anyway", member)
        return np.asarray(arr, order="C")


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def _describe(entry):
    return f"layer {entry.get('layer')!r} weight {entry.get('name')!r}"


def _expect_weights(archive, model, match_layer_names):
    """Check the weight entries against the model's weights, position by position."""
    entries = archive.entries("weight")
    own = model.named_weights()
    if len(entries) != len(own):
        raise archive.error(f"the file has {len(entries)} weights; model {model.name!r} has "
                            f"{len(own)}", MANIFEST)
    for k, (e, (layer, w, n)) in enumerate(zip(entries, own)):
        ok = (e.get("name") == n and tuple(e["shape"]) == w.shape
              and e.get("layer_class") == type(layer).__name__
              and (not match_layer_names or e.get("layer") == layer.name))
        if match_layer_names:
            ok = ok and e["dtype"] == w.dtype.name
        if not ok:
            raise archive.error(
                f"weights[{k}] is {e.get('layer_class')} {_describe(e)} with shape "
                f"{tuple(e['shape'])} and dtype {e['dtype']}; the model has "
                f"{type(layer).__name__} layer {layer.name!r} weight {n!r} with shape "
                f"{w.shape} and dtype {w.dtype.name}", e["member"])
    return entries


def _read_weights(archive, model, allow_nan, match_layer_names):
    entries = _expect_weights(archive, model, match_layer_names)
    return [archive.array(e, allow_nan, _describe(e)) for e in entries]


# -- rebuilding a model -------------------------------------------------------------------------
_MODEL_CLASSES = ("Sequential", "Model", "Functional")


def _build_model(archive):
    from .layers.base import skip_initializers
    from .models import Model, Sequential

    spec = archive.manifest.get("model")
    if not isinstance(spec, dict) or spec.get("class_name") not in _MODEL_CLASSES or \
            not isinstance(spec.get("config"), dict):
        got = spec.get("class_name") if isinstance(spec, dict) else spec
        raise archive.error(f"'model' must describe a model (one of {_MODEL_CLASSES}); got "
                            f"{got!r}", MANIFEST)
    config = spec["config"]
    if not isinstance(config.get("layers", []), list):
        raise archive.error("the model's 'layers' must be a list", MANIFEST)
    try:
        # The weights come from the file: build without drawing from any random stream.
        with skip_initializers():
            if spec["class_name"] == "Sequential":
                model = _build_sequential(config, Sequential)
                if not model.built and archive.manifest.get("built") and \
                        archive.manifest.get("input_shape") is not None:
                    model.build(tuple(archive.manifest["input_shape"]))
            else:
                model = Model.from_config(config)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, MemoryError,
            OverflowError, RecursionError) as e:
        raise archive.error(f"the architecture cannot be rebuilt: {e}", MANIFEST) from None
    return model


def _build_sequential(config, Sequential):
    from .layers import deserialize as _deserialize_layer
    model = Sequential(name=config.get("name"), trainable=config.get("trainable", True))
    for k, lc in enumerate(config.get("layers", [])):
        if not isinstance(lc, dict) or not isinstance(lc.get("class_name"), str):
            raise ValueError(f"layers[{k}] must be an object with a 'class_name'")
        model.add(_deserialize_layer(lc))
    return model


def _optimizer_from_config(archive, config):
    from . import optimizers as _optimizers
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise ValueError(f"the optimizer config must be an object; got {config!r}")
    inner = dict(config["config"])
    lr = inner.get("learning_rate")
    if isinstance(lr, dict):
        from . import schedules as _schedules
        inner["learning_rate"] = _schedules.deserialize(lr)
    return _optimizers.deserialize({"class_name": config.get("class_name"), "config": inner})


def _compile(archive, model, allow_nan):
    c = archive.manifest.get("compile")
    if c is None:
        return
    try:
        if not isinstance(c, dict):
            raise ValueError(f"'compile' must be an object or null; got {type(c).__name__}")
        optimizer = _optimizer_from_config(archive, c.get("optimizer"))
        loss = c.get("loss")
        metrics = c.get("metrics") or []
        if not isinstance(metrics, (list, dict)):
            raise ValueError(f"'metrics' must be a list or an object; got {metrics!r}")
        model.compile(optimizer=optimizer, loss=loss, loss_weights=c.get("loss_weights"),
                      metrics=metrics)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise archive.error(f"the compile settings are invalid: {e}", MANIFEST) from None
    its = archive.entries("iterations")
    slots = archive.entries("slot")
    if len(its) != 1 or its[0]["shape"] != [] or its[0]["dtype"] != "int64":
        raise archive.error("the optimizer state needs exactly one int64 scalar 'iterations' "
                            "array", MANIFEST)
    iterations = archive.array(its[0], allow_nan, "the optimizer's iteration count")
    if int(iterations) < 0:
        raise archive.error(f"the optimizer's iteration count is negative ({int(iterations)})",
                            its[0]["member"])
    weights = model.weights
    slot_names = list(optimizer.slot_names)
    params, values, counts = [], [], {}
    for k, e in enumerate(slots):
        i = e.get("weight")
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(weights):
            raise archive.error(f"optimizer slot arrays[{k}] refers to weight {i!r}; the model "
                                f"has {len(weights)}", e["member"])
        w = weights[i]
        if not params or params[-1] is not w:
            if any(p is w for p in params):
                raise archive.error(f"the slots of weights[{i}] are not contiguous",
                                    e["member"])
            params.append(w)
        pos = counts.get(i, 0)
        counts[i] = pos + 1
        if pos >= len(slot_names) or e.get("slot") != slot_names[pos]:
            raise archive.error(f"optimizer slot {e.get('slot')!r} of weights[{i}] does not "
                                f"match {type(optimizer).__name__}'s slots {slot_names}",
                                e["member"])
        if tuple(e["shape"]) != w.shape or e["dtype"] != w.dtype.name:
            raise archive.error(f"optimizer slot {e.get('slot')!r} of weights[{i}] has shape "
                                f"{tuple(e['shape'])} and dtype {e['dtype']}; the weight has "
                                f"{w.shape} and {w.dtype.name}", e["member"])
        values.append(archive.array(e, allow_nan, f"optimizer slot {e.get('slot')!r} of "
                                                  f"weights[{i}]"))
    if any(n != len(slot_names) for n in counts.values()):
        raise archive.error(f"every weight needs {len(slot_names)} optimizer slots "
                            f"({slot_names})", MANIFEST)
    optimizer.build(params)
    optimizer.set_variables([iterations] + values)


def _restore_rng(archive, model):
    rng = archive.manifest.get("rng")
    if rng is None:
        return
    if not isinstance(rng, dict):
        raise archive.error("'rng' must be an object", MANIFEST)
    seed = rng.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise archive.error(f"the training seed must be an int >= 0 or null; got {seed!r}",
                            MANIFEST)
    layer_states = rng.get("layers") or {}
    if not isinstance(layer_states, dict):
        raise archive.error("'rng.layers' must be an object", MANIFEST)
    by_name = {layer.name: layer for layer in model.layers}
    for lname, states in layer_states.items():
        layer = by_name.get(lname)
        if layer is None or not isinstance(states, dict):
            raise archive.error(f"random state for unknown layer {lname!r}", MANIFEST)
        try:
            layer.set_rng_state(states)
        except ValueError as e:
            raise archive.error(f"random state of layer {lname!r}: {e}", MANIFEST) from None
    model._train_seed = seed


def _foreign_format(path):
    """"keras" (.keras), "keras-h5" (.h5 / .hdf5) or "safetensors" (.safetensors) for a file
    of another library, by its suffix, unless it is a nanonet archive after all (a zip holding
    nanonet.json: nanonet saves under any name); None otherwise."""
    lower = path.lower()
    kind = ("keras" if lower.endswith(".keras") else
            "keras-h5" if lower.endswith((".h5", ".hdf5")) else
            "safetensors" if lower.endswith(".safetensors") else None)
    if kind is None:
        return None
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                return kind
        with zipfile.ZipFile(path) as zf:
            return None if MANIFEST in zf.namelist() else kind
    except (OSError, zipfile.BadZipFile):
        return kind  # the reader of that format reports the problem


def load_model(filepath: str | os.PathLike[str], compile: bool = True,
               allow_nan: bool = False) -> Any:
    """Loads a model saved by ``model.save``.

    Rebuilds the architecture, the weights, the compile settings and the optimizer's state,
    and the random state that makes a resumed ``fit(initial_epoch=k)`` repeat the original
    run. Loading reads data only: it never executes code from the file.

    Args:
        filepath (str or path): the file.
        compile (bool, default True): restore the compile settings and the optimizer state;
            False gives an uncompiled model.
        allow_nan (bool, default False): accept NaN or inf weights.

    Returns:
        Model: the model (a Sequential when one was saved).

    Raises:
        ValueError: naming the file and member, when the file is not a valid nanonet model
            (truncated, corrupt, hostile, wrong version, shape or dtype mismatch, NaN or inf
            weights unless ``allow_nan=True``), or is a weights-only file.
        FileNotFoundError: the file does not exist.

    Example:

    >>> model = nn.Sequential([nn.Input((3,)), nn.layers.Dense(2)])
    >>> model.compile(optimizer="adam", loss="mse")
    >>> model.save("model.nnet")
    >>> restored = nn.load_model("model.nnet")
    >>> type(restored).__name__, restored.optimizer
    ('Sequential', <Adam learning_rate=0.001 iterations=0>)
    """
    fn = "load_model"
    path = _path(filepath, fn)
    if _foreign_format(path) == "keras":  # a Keras 3 file (needs h5py)
        from .interchange.keras_files import load_keras_model
        return load_keras_model(path, compile=compile)
    with _Archive(path, fn) as archive:
        if archive.manifest["kind"] != "model":
            raise archive.error("this is a weights-only file (written by save_weights); "
                                "build the model and call model.load_weights on it")
        model = _build_model(archive)
        weights = _read_weights(archive, model, allow_nan, match_layer_names=True)
        if weights:
            model.set_weights(weights)
        if compile:
            _compile(archive, model, allow_nan)
        _restore_rng(archive, model)
        _restore_class_names(archive, model)
    return model


def _restore_class_names(archive, model):
    from .models.functional import check_class_names
    try:
        model.class_names = check_class_names(archive.manifest.get("class_names"),
                                              "'class_names'")
    except (TypeError, ValueError) as e:
        raise archive.error(str(e), MANIFEST) from None


def load_weights(model: Any, filepath: str | os.PathLike[str], allow_nan: bool = False) -> None:
    """Set the model's weights from a file written by ``save_weights`` or ``save``.

    Weights are matched by position; layer classes, weight names and shapes must agree (layer
    names may differ; values are cast to the model's dtypes). An unbuilt model is first built
    for the input shape stored in the file.
    """
    fn = "load_weights"
    path = _path(filepath, fn)
    foreign = _foreign_format(path)
    if foreign in ("keras", "keras-h5"):  # Keras 3 weights (needs h5py)
        from .interchange.keras_files import load_keras_weights
        return load_keras_weights(model, path)
    if foreign == "safetensors":
        from .interchange.weights import load_safetensors
        return load_safetensors(model, path, allow_nan=allow_nan)
    with _Archive(path, fn) as archive:
        if not model.built:
            shape = archive.manifest.get("input_shape")
            if shape is None:
                raise ValueError(f"{fn}: model {model.name!r} is not built and {path!r} does "
                                 "not record an input shape; build the model first")
            try:
                model.build(tuple(shape))
            except (TypeError, ValueError) as e:
                raise archive.error(f"cannot build the model for the stored input shape "
                                    f"{shape!r}: {e}", MANIFEST) from None
        weights = _read_weights(archive, model, allow_nan, match_layer_names=False)
        if weights:
            model.set_weights(weights)
