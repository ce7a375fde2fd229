"""Is a training checkpoint whole? What `tformer train --resume` checks before it trusts one:
the files are present, inside the checkpoint, not empty, the JSON files parse, and each
safetensors file's header parses and describes exactly the bytes the file holds. Cheap: no
tensor data is read. A power loss can leave any of these broken (a file renamed into place
before its data reached the disk reads as zeros or nothing)."""
from __future__ import annotations

import json
import os

from .weights import CorruptSafetensors, read_safetensors_header

STATE_FILE = "train_state.json"  # written last: a step directory without it is debris of a killed save
REQUIRED_FILES = ("config.json", "model.safetensors", os.path.join("trainer", "trainer.json"),
                  os.path.join("trainer", "optimizer.safetensors"), STATE_FILE)


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
            return f"{rel}: missing"
        if not is_inside(full, path):
            raise ValueError(f"{full} resolves to {os.path.realpath(full)}, outside the checkpoint {path}: "
                             "refusing to load it")
        problem = _json_problem(full) if rel.endswith(".json") else _safetensors_problem(full)
        if problem:
            return f"{rel}: {problem}"
    return None


def _json_problem(path):
    if os.path.getsize(path) == 0:
        return "empty file (0 bytes)"
    try:
        with open(path, "rb") as f:
            obj = json.loads(f.read())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "not valid JSON"
    return None if isinstance(obj, dict) else "not a JSON object"


def _safetensors_problem(path):
    try:
        read_safetensors_header(path, exact=True)
    except CorruptSafetensors as e:
        return e.problem
    return None
