"""Checkpoints and model export of `tformer train`: checkpoints/step-NNNNNNNN/ written to a
temporary directory, fsynced and renamed, the pointer checkpoints/latest replaced atomically
(atomic_files), old ones pruned; the latest model exported into the model directory file by
file. Resuming verifies the checkpoint (checkpoint_check) and falls back to the previous
whole one when the newest is damaged."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings

from .atomic_files import atomic_write_bytes, fsync_directory, make_temp_directory, replace_durably
from .checkpoint_check import STATE_FILE, checkpoint_problem, is_inside

_STEP_DIR = re.compile(r"step-\d+")


class CheckpointWarning(UserWarning):
    """The newest checkpoint is damaged: training resumes from an older one."""


class BrokenCheckpointError(ValueError):
    """Checkpoints exist but none is whole: the message names each one and what is wrong."""


def _is_whole(path) -> bool:
    try:
        return checkpoint_problem(path) is None
    except ValueError:  # a file links outside the checkpoint: never kept, never resumed from
        return False


def _write_json(path, obj):
    atomic_write_bytes(path, (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def export_model(model, out, dtype: str = "float32") -> None:
    """model.save into a temporary directory, then each file renamed into `out`. dtype
    "int8": an int8 copy of the model is saved (int8 is a CPU dtype: the copy is on the CPU)."""
    if dtype == "int8":
        model = model.to(device="cpu", dtype="int8")
    elif dtype != "float32":
        raise ValueError(f"export dtype must be float32 or int8, got {dtype!r}")
    tmp = tempfile.mkdtemp(prefix=".tmp-model-", dir=out)
    try:
        model.save(tmp)  # fsyncs each file
        for name in sorted(os.listdir(tmp)):
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
        fsync_directory(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Checkpoints:
    """checkpoints/step-NNNNNNNN/ {config.json, model.safetensors, trainer/, train_state.json}
    and checkpoints/latest (the name of the newest complete one)."""

    def __init__(self, out):
        self.root = os.path.join(out, "checkpoints")

    def _names(self):
        """The step directories holding a state file (checkpoints, whole or damaged), newest first."""
        if not os.path.isdir(self.root):
            return []
        return sorted((d for d in os.listdir(self.root)
                       if _STEP_DIR.fullmatch(d) and os.path.exists(os.path.join(self.root, d, STATE_FILE))),
                      reverse=True)

    def _pointed(self):
        """The name checkpoints/latest holds, or None. Raises ValueError when it names a path
        outside checkpoints/ (`../x`, an absolute path, a link elsewhere): refused, never read."""
        pointer = os.path.join(self.root, "latest")
        if not os.path.exists(pointer):
            return None
        with open(pointer, encoding="utf-8", errors="replace") as f:
            name = f.read().strip()
        if not name:  # an empty pointer (a power loss under an older tformer): scan the directories
            return None
        target = os.path.join(self.root, name)
        if os.path.realpath(os.path.dirname(target)) != os.path.realpath(self.root) or not is_inside(target, self.root):
            raise ValueError(f"{pointer} names {name!r}, which is not inside {self.root}: refusing to resume from it")
        return name

    def has_run(self) -> bool:
        """True when a checkpoint (whole or damaged) exists: the directory holds a training run."""
        return bool(self._names())

    def latest(self):
        """Path of the newest whole checkpoint, or None when there is none. Each candidate is
        verified (checkpoint_check); a damaged one is skipped with a CheckpointWarning that
        names what is wrong. Raises BrokenCheckpointError when checkpoints exist but none is
        whole, ValueError when a checkpoint or the pointer resolves outside checkpoints/."""
        names = self._names()
        pointed = self._pointed()
        if pointed in names:  # the pointer names the newest; the directory order is the fallback
            names.remove(pointed)
            names.insert(0, pointed)
        broken: list[str] = []
        for name in names:
            path = os.path.join(self.root, name)
            if not is_inside(path, self.root):
                raise ValueError(f"{path} resolves to {os.path.realpath(path)}, outside {self.root}: "
                                 "refusing to resume from it")
            problem = checkpoint_problem(path)
            if problem is None:
                if broken:
                    warnings.warn(CheckpointWarning(
                        "skipping damaged checkpoint(s): " + "; ".join(broken) + f"; resuming from {path}"),
                        stacklevel=2)
                return path
            broken.append(f"{path}: {problem}")
        if broken:
            raise BrokenCheckpointError("no whole checkpoint to resume from: " + "; ".join(broken))
        return None

    def save(self, model, trainer, state, keep=2) -> str:
        os.makedirs(self.root, exist_ok=True)
        name = f"step-{state['step']:08d}"
        final = os.path.join(self.root, name)
        if os.path.exists(final) and not _is_whole(final):
            shutil.rmtree(final)  # a damaged one of an earlier run (resume skipped it): written anew
        if not os.path.exists(final):
            tmp = make_temp_directory(".tmp-", self.root)  # renamed into place: its mode stays
            try:
                model.save(tmp)
                trainer.save(os.path.join(tmp, "trainer"))
                _write_json(os.path.join(tmp, STATE_FILE), state)  # written last: marks it complete
                replace_durably(tmp, final)  # every file and directory inside is fsynced already
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        atomic_write_bytes(os.path.join(self.root, "latest"), name.encode())
        whole = [d for d in sorted(os.listdir(self.root))
                 if _STEP_DIR.fullmatch(d) and _is_whole(os.path.join(self.root, d))]
        for d in sorted(os.listdir(self.root)):
            # older checkpoints beyond `keep`, and the debris of killed runs (damaged ones included)
            stale = d in whole[: max(0, len(whole) - keep)] and d != name
            if stale or d.startswith(".tmp-") or (d.startswith("step-") and d not in whole):
                shutil.rmtree(os.path.join(self.root, d), ignore_errors=True)
        return final
