"""Is a training checkpoint whole? What `tformer train --resume` checks before it trusts one:
the files are present, inside the checkpoint, not empty, the JSON files parse, and each
safetensors file's header parses and describes exactly the bytes the file holds. Cheap: no
tensor data is read. A power loss can leave any of these broken (a file renamed into place
before its data reached the disk reads as zeros or nothing)."""
from __future__ import annotations

import json
import os
import struct

STATE_FILE = "train_state.json"  # written last: a step directory without it is debris of a killed save
REQUIRED_FILES = ("config.json", "model.safetensors", os.path.join("trainer", "trainer.json"),
                  os.path.join("trainer", "optimizer.safetensors"), STATE_FILE)

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2,
                "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
_MAX_HEADER = 100 << 20  # the safetensors format's own bound on the header


def is_inside(path, directory) -> bool:
    """True when `path`, symbolic links resolved, lies under `directory` (also resolved)."""
    real, base = os.path.realpath(path), os.path.realpath(directory)
    return os.path.commonpath([real, base]) == base and real != base


def checkpoint_problem(path) -> str | None:
    """What is wrong with the checkpoint directory `path` (one sentence), or None when it is
    whole. Raises ValueError when one of its files resolves outside it (a link to elsewhere):
    such a checkpoint is refused, never loaded."""
    for rel in REQUIRED_FILES:
        full = os.path.join(path, rel)
        if not os.path.isfile(full):
            return f"{rel} is missing"
        if not is_inside(full, path):
            raise ValueError(f"{full} resolves to {os.path.realpath(full)}, outside the checkpoint {path}: "
                             "refusing to load it")
        problem = _json_problem(full) if rel.endswith(".json") else _safetensors_problem(full)
        if problem:
            return f"{rel} {problem}"
    return None


def _json_problem(path):
    if os.path.getsize(path) == 0:
        return "is empty (0 bytes)"
    try:
        with open(path, "rb") as f:
            obj = json.loads(f.read())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "is not valid JSON"
    return None if isinstance(obj, dict) else "is not a JSON object"


def _safetensors_problem(path):
    size = os.path.getsize(path)
    if size < 8:
        return f"is truncated ({size} bytes)"
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(size - 8, _MAX_HEADER):
            return f"has a corrupt header length ({n} bytes in a file of {size})"
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "has a corrupt header (not JSON)"
    if not isinstance(header, dict):
        return "has a corrupt header (not a JSON object)"
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        span = _tensor_span(info)
        if span is None:
            return f"has a corrupt header entry for tensor {name!r}"
        spans.append(span)
    # the tensors tile the data section exactly, in order of their offsets
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            return "has a corrupt header (tensor data overlaps or leaves gaps)"
        end = stop
    if 8 + n + end != size:
        return f"has {size} bytes where its header describes {8 + n + end} (truncated or padded)"
    return None


def _tensor_span(info):
    """(begin, end) of a tensor's bytes when its entry is consistent (the byte count matches
    dtype x shape), else None."""
    if not isinstance(info, dict):
        return None
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in _DTYPE_BYTES or not isinstance(shape, list) or not isinstance(offsets, list) or len(offsets) != 2:
        return None
    if not all(type(d) is int and d >= 0 for d in shape + offsets):
        return None
    count = _DTYPE_BYTES[dtype]
    for d in shape:
        count *= d
    begin, end = offsets
    return (begin, end) if end - begin == count else None
