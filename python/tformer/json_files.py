"""Reading the JSON files of model and checkpoint directories: one place that turns a
file that is not JSON, or not the JSON shape expected, into a ValueError naming the file."""
from __future__ import annotations

import json


def read_json_object(path: str) -> dict:
    """A JSON file that must hold one object (ValueError naming the file otherwise)."""
    with open(path, "rb") as f:
        try:
            value = json.loads(f.read())
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ValueError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got a JSON {type(value).__name__}")
    return value


__all__ = ["read_json_object"]
