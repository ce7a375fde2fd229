"""Reading weight files into float32 numpy arrays: safetensors (mmap, never code) and,
when torch is installed, pytorch_model.bin loaded with weights_only=True."""
from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping

import numpy as np

from .config import is_int
from .json_files import read_json_object

_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": None,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_ST_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_ST_FLOATS = ("F64", "F32", "F16", "BF16")


_MAX_HEADER = 100 << 20  # the safetensors format's own bound on the header's size


class CorruptSafetensors(ValueError):
    """A safetensors file whose header does not describe its bytes; `problem` says how
    (the message adds the file)."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.problem = problem


def _check_entry(path: str, name: str, info) -> tuple:
    """(start, end) of one tensor's bytes after checking its header entry: a known dtype,
    a shape of non-negative ints, and offsets that hold exactly shape x itemsize bytes."""
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
        raise CorruptSafetensors(path, f"corrupt safetensors header: entry {name!r} needs dtype, shape and "
                                       "data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _ST_DTYPES:
        raise CorruptSafetensors(path, f"tensor {name!r} has unsupported dtype {dtype!r}")
    if not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape):
        raise CorruptSafetensors(path, f"corrupt safetensors header: tensor {name!r} has shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(is_int(o) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise CorruptSafetensors(path, f"corrupt safetensors header: tensor {name!r} has data_offsets {offsets!r} "
                                       "(expected [start, end] with 0 <= start <= end)")
    nbytes = _ST_ITEMSIZE[dtype]
    for d in shape:
        nbytes *= d
    if offsets[1] - offsets[0] != nbytes:
        raise CorruptSafetensors(path, f"corrupt safetensors header: tensor {name!r} of shape {shape} {dtype} "
                                       f"needs {nbytes} bytes, its data_offsets {offsets} hold "
                                       f"{offsets[1] - offsets[0]}")
    return offsets[0], offsets[1]


def read_safetensors_header(path: str, exact: bool = False) -> dict:
    """The JSON header, after checking that it describes tensors that fit the file without
    overlapping (CorruptSafetensors, a ValueError naming the file, otherwise). exact: also
    that the tensors tile the data section with no gap and the file ends where they do (what
    safetensors writes; a checkpoint cut short by a power loss fails it)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CorruptSafetensors(path, f"not a safetensors file (truncated: {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _MAX_HEADER):
            raise CorruptSafetensors(path, f"truncated or corrupt safetensors file (header of {n} bytes, file of "
                                           f"{size})")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise CorruptSafetensors(path, f"corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise CorruptSafetensors(path, "corrupt safetensors header: a JSON object is expected, got "
                                       f"{type(header).__name__}")
    spans = sorted((_check_entry(path, k, v), k) for k, v in header.items() if k != "__metadata__")
    end = 0
    for (start, stop), name in spans:
        if start < end:
            raise CorruptSafetensors(path, f"corrupt safetensors header: tensor {name!r} overlaps another "
                                           "tensor's bytes")
        if exact and start > end:
            raise CorruptSafetensors(path, f"corrupt safetensors header: a gap of {start - end} bytes before "
                                           f"tensor {name!r}")
        end = max(end, stop)
    if 8 + n + end > size:
        raise CorruptSafetensors(path, f"truncated safetensors file: the header describes {8 + n + end} bytes, "
                                       f"the file has {size}")
    if exact and 8 + n + end != size:
        raise CorruptSafetensors(path, f"corrupt safetensors file: the header describes {8 + n + end} bytes, "
                                       f"the file has {size}")
    return header


class LazySafetensors(Mapping):
    """The tensors of a safetensors file, each read from disk when asked for (and not
    kept): a loader that converts and hands over one tensor at a time never holds the
    whole file in memory. Tensors come back as float32; a tensor stored as integers or
    booleans is refused when read (weights are never reinterpreted)."""

    def __init__(self, path: str):
        self.path = path
        self.header = {k: v for k, v in read_safetensors_header(path).items() if k != "__metadata__"}
        with open(path, "rb") as f:
            self.base = 8 + struct.unpack("<Q", f.read(8))[0]

    def shape(self, name) -> tuple:
        """The stored shape, from the header (nothing is read)."""
        return tuple(self.header[name]["shape"])

    def dtype(self, name) -> str:
        """The stored safetensors dtype ("F32", "I8", ...), from the header."""
        return self.header[name]["dtype"]

    def _bytes(self, name):
        start, end = self.header[name]["data_offsets"]
        with open(self.path, "rb") as f:
            f.seek(self.base + start)
            raw = np.frombuffer(f.read(end - start), dtype=np.uint8)
        if raw.size != end - start:
            raise ValueError(f"{self.path}: truncated safetensors file (tensor {name!r} is cut short)")
        return raw

    def exact(self, name, dtype: str):
        """The tensor as stored, which must be `dtype` ("I8", "F32"): int8 weights and their
        scales are read bit for bit, never converted."""
        stored = self.header[name]["dtype"]
        if stored != dtype:
            raise ValueError(f"{self.path}: tensor {name!r} is stored as {stored}, expected {dtype}")
        return self._bytes(name).view(_ST_DTYPES[dtype]).reshape(self.shape(name))

    def __getitem__(self, name):
        info = self.header[name]
        dtype = info["dtype"]
        if dtype not in _ST_FLOATS:
            raise ValueError(f"{self.path}: tensor {name!r} is stored as {dtype}: weights must be floating point "
                             f"({', '.join(_ST_FLOATS)})")
        raw = self._bytes(name)
        if dtype == "BF16":  # numpy has no bfloat16: widen the 16 bits to float32's top half
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = raw.view(_ST_DTYPES[dtype])
        return arr.reshape(tuple(info["shape"])).astype(np.float32, copy=False)

    def __contains__(self, name):  # from the header: Mapping's default would read the tensor
        return name in self.header

    def __iter__(self):
        return iter(self.header)

    def __len__(self):
        return len(self.header)


def load_safetensors(path: str, lazy: bool = False):
    """All tensors of a safetensors file (floats as float32); lazy: read on access."""
    tensors = LazySafetensors(path)
    return tensors if lazy else {name: tensors[name] for name in tensors}


def load_pytorch_bin(path: str) -> Mapping[str, np.ndarray]:
    """The tensors of a pytorch_model.bin (torch.load with weights_only=True), as float32 numpy
    arrays read on demand.

    Raises:
        RuntimeError: torch is not installed.
        ValueError: the file is not a readable state dict (naming it)."""
    try:
        import torch
    except ImportError:
        raise RuntimeError(
            f"{path} is a PyTorch pickle: reading it needs torch (pip install torch), "
            "or convert the checkpoint to model.safetensors"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or not a weights file
        raise ValueError(f"{path}: could not read PyTorch weights ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return _FloatTensors(path, state)


class _FloatTensors(Mapping):
    """A state dict's tensors as float32 numpy arrays; one that is not floating point is
    refused when asked for, naming it and its dtype."""

    def __init__(self, path, state):
        self.path = path
        self.arrays, self.refused = {}, {}
        for name, t in state.items():
            if not hasattr(t, "detach"):
                continue
            t = t.detach()
            if t.is_floating_point():
                self.arrays[name] = t.float().numpy()
            else:
                self.refused[name] = str(t.dtype).replace("torch.", "")

    def shape(self, name) -> tuple:
        return tuple(self.arrays[name].shape) if name in self.arrays else ()

    def __getitem__(self, name):
        if name in self.refused:
            raise ValueError(f"{self.path}: tensor {name!r} is stored as {self.refused[name]}: weights must be "
                             "floating point")
        return self.arrays[name]

    def __iter__(self):
        yield from self.arrays
        yield from self.refused

    def __len__(self):
        return len(self.arrays) + len(self.refused)


def tensor_shape(tensors: Mapping, name: str) -> tuple:
    """A tensor's shape without reading its data where the mapping knows it."""
    return tensors.shape(name) if hasattr(tensors, "shape") else tuple(np.shape(tensors[name]))


class _Shards(Mapping):
    """Several tensor mappings seen as one."""

    def __init__(self):
        self.parts = []

    def add(self, mapping):
        self.parts.append(mapping)

    def __getitem__(self, name):
        for part in self.parts:
            if name in part:
                return part[name]
        raise KeyError(name)

    def shape(self, name) -> tuple:
        for part in self.parts:
            if name in part:
                return tensor_shape(part, name)
        raise KeyError(name)

    def __iter__(self):
        for part in self.parts:
            yield from part

    def __len__(self):
        return sum(len(p) for p in self.parts)


def _shard_path(directory: str, index_path: str, shard) -> str:
    """The file a sharded index names, refused unless it is a plain name that resolves
    (symlinks followed) inside the model directory. The one exception is the Hugging Face
    hub cache, where snapshots/<revision>/<file> links to ../../blobs/<hash>."""
    if not isinstance(shard, str) or not shard:
        raise ValueError(f"{index_path}: weight_map names a shard {shard!r}: expected a file name")
    real_dir = os.path.realpath(directory)
    full = os.path.realpath(os.path.join(real_dir, shard))
    allowed = [real_dir]
    if os.path.basename(os.path.dirname(real_dir)) == "snapshots":  # hub cache layout
        allowed.append(os.path.join(os.path.dirname(os.path.dirname(real_dir)), "blobs"))
    inside = not os.path.isabs(shard) and ".." not in shard.replace("\\", "/").split("/") and any(
        os.path.commonpath([full, a]) == a for a in allowed)
    if not inside:
        raise ValueError(f"{index_path}: shard {shard!r} is outside the model directory {directory}: "
                         "shards must be files inside it")
    if not os.path.isfile(full):
        raise FileNotFoundError(f"{os.path.join(directory, shard)}: shard listed in {os.path.basename(index_path)} "
                                "is missing")
    return full


def _read_index(index_path: str) -> list:
    """The shard names of a sharded checkpoint's index.json (its weight_map's values)."""
    weight_map = read_json_object(index_path).get("weight_map")
    if not isinstance(weight_map, dict):
        raise ValueError(f"{index_path}: expected a JSON object with a weight_map object (tensor name -> shard file)")
    shards = set()
    for shard in weight_map.values():
        if not isinstance(shard, str):
            raise ValueError(f"{index_path}: weight_map names a shard {shard!r}: expected a file name")
        shards.add(shard)
    return sorted(shards)


def load_checkpoint_dir(path: str):
    """Tensors of a Hugging Face model directory (a mapping; safetensors tensors are read
    on access): model.safetensors (or its sharded index), else pytorch_model.bin (or its index)."""
    candidates = [
        ("model.safetensors", lambda p: load_safetensors(p, lazy=True)),
        ("model.safetensors.index.json", None),
        ("pytorch_model.bin", load_pytorch_bin),
        ("pytorch_model.bin.index.json", None),
    ]
    for fname, loader in candidates:
        full = os.path.join(path, fname)
        if not os.path.exists(full):
            continue
        if not os.path.isfile(full):
            raise ValueError(f"{full}: not a file")
        if loader is not None:
            return loader(full)
        shard_loader = (lambda p: load_safetensors(p, lazy=True)) if fname.startswith("model.safetensors") \
            else load_pytorch_bin
        out = _Shards()
        for shard in _read_index(full):
            out.add(shard_loader(_shard_path(path, full, shard)))
        return out
    raise FileNotFoundError(
        f"no weights in {path}: expected model.safetensors or pytorch_model.bin (or a sharded index of them)"
    )
