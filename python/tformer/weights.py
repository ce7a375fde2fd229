"""Reading weight files into float32 numpy arrays: safetensors (mmap, never code) and,
when torch is installed, pytorch_model.bin loaded with weights_only=True."""
from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping

import numpy as np

_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": None,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def read_safetensors_header(path: str) -> dict:
    """The JSON header, after checking that the file is whole (clear error when truncated)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: not a safetensors file (truncated: {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise ValueError(f"{path}: truncated or corrupt safetensors file (header of {n} bytes, file of {size})")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: corrupt safetensors header ({e})") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise ValueError(
            f"{path}: truncated safetensors file: the header describes {8 + n + end} bytes, the file has {size}"
        )
    return header


class LazySafetensors(Mapping):
    """The tensors of a safetensors file, each read from disk when asked for (and not
    kept): a loader that converts and hands over one tensor at a time never holds the
    whole file in memory. Floats come back as float32."""

    def __init__(self, path: str):
        self.path = path
        self.header = {k: v for k, v in read_safetensors_header(path).items() if k != "__metadata__"}
        with open(path, "rb") as f:
            self.base = 8 + struct.unpack("<Q", f.read(8))[0]
        for name, info in self.header.items():
            if info["dtype"] not in _ST_DTYPES:
                raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")

    def __getitem__(self, name):
        info = self.header[name]
        start, end = info["data_offsets"]
        dtype = info["dtype"]
        with open(self.path, "rb") as f:
            f.seek(self.base + start)
            raw = np.frombuffer(f.read(end - start), dtype=np.uint8)
        if dtype == "BF16":  # numpy has no bfloat16: widen the 16 bits to float32's top half
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = raw.view(_ST_DTYPES[dtype])
        arr = arr.reshape(tuple(info["shape"]))
        return arr.astype(np.float32, copy=False) if arr.dtype.kind == "f" else np.array(arr)

    def __iter__(self):
        return iter(self.header)

    def __len__(self):
        return len(self.header)


def load_safetensors(path: str, lazy: bool = False):
    """All tensors of a safetensors file (floats as float32); lazy: read on access."""
    tensors = LazySafetensors(path)
    return tensors if lazy else {name: tensors[name] for name in tensors}


def load_pytorch_bin(path: str) -> dict:
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
    out = {}
    for name, t in state.items():
        if hasattr(t, "detach"):
            t = t.detach()
            out[name] = (t.float() if t.is_floating_point() else t).numpy()
    return out


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

    def __iter__(self):
        for part in self.parts:
            yield from part

    def __len__(self):
        return sum(len(p) for p in self.parts)


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
        if loader is not None:
            return loader(full)
        with open(full) as f:
            index = json.load(f)
        shard_loader = (lambda p: load_safetensors(p, lazy=True)) if fname.startswith("model.safetensors") \
            else load_pytorch_bin
        out = _Shards()
        for shard in sorted(set(index.get("weight_map", {}).values())):
            shard_path = os.path.join(path, shard)
            if not os.path.exists(shard_path):
                raise FileNotFoundError(f"{shard_path}: shard listed in {fname} is missing")
            out.add(shard_loader(shard_path))
        return out
    raise FileNotFoundError(
        f"no weights in {path}: expected model.safetensors or pytorch_model.bin (or a sharded index of them)"
    )
