"""Checkpoints and model export of `tformer train`: checkpoints/step-NNNNNNNN/ written to a
temporary directory and renamed, the pointer checkpoints/latest replaced atomically, old ones
pruned; the latest model exported into the model directory file by file."""
from __future__ import annotations

import json
import os
import shutil
import tempfile

from .spm import atomic_write_bytes

STATE_FILE = "train_state.json"


def _write_json(path, obj):
    atomic_write_bytes(path, (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def export_model(model, out) -> None:
    """model.save into a temporary directory, then each file renamed into `out`."""
    tmp = tempfile.mkdtemp(prefix=".tmp-model-", dir=out)
    try:
        model.save(tmp)
        for name in sorted(os.listdir(tmp)):
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Checkpoints:
    """checkpoints/step-NNNNNNNN/ {config.json, model.safetensors, trainer/, train_state.json}
    and checkpoints/latest (the name of the newest complete one)."""

    def __init__(self, out):
        self.root = os.path.join(out, "checkpoints")

    def latest(self):
        """Path of the newest complete checkpoint, or None."""
        pointer = os.path.join(self.root, "latest")
        if os.path.exists(pointer):
            with open(pointer, encoding="utf-8") as f:
                path = os.path.join(self.root, f.read().strip())
            if os.path.exists(os.path.join(path, STATE_FILE)):
                return path
        done = sorted(d for d in os.listdir(self.root) if d.startswith("step-")) if os.path.isdir(self.root) else []
        done = [d for d in done if os.path.exists(os.path.join(self.root, d, STATE_FILE))]
        return os.path.join(self.root, done[-1]) if done else None

    def save(self, model, trainer, state, keep=2) -> str:
        os.makedirs(self.root, exist_ok=True)
        name = f"step-{state['step']:08d}"
        final = os.path.join(self.root, name)
        if not os.path.exists(final):
            tmp = tempfile.mkdtemp(prefix=".tmp-", dir=self.root)
            try:
                model.save(tmp)
                trainer.save(os.path.join(tmp, "trainer"))
                _write_json(os.path.join(tmp, STATE_FILE), state)  # written last: marks it complete
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        atomic_write_bytes(os.path.join(self.root, "latest"), name.encode())
        complete = [d for d in sorted(os.listdir(self.root))
                    if d.startswith("step-") and os.path.exists(os.path.join(self.root, d, STATE_FILE))]
        for d in sorted(os.listdir(self.root)):
            # older checkpoints beyond `keep`, and the debris of killed runs
            stale = d in complete[: max(0, len(complete) - keep)] and d != name
            if stale or d.startswith(".tmp-") or (d.startswith("step-") and d not in complete):
                shutil.rmtree(os.path.join(self.root, d), ignore_errors=True)
        return final
