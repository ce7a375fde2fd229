"""tformer.Trainer: one training step = forward, label-smoothed cross-entropy, backward,
gradient clipping and AdamW, all in C++ (cpp/training/). The Python side prepares the
batch (decoder input = [start] + target, labels = target + [eos]) and keeps the step count."""
from __future__ import annotations

import json
import math
import numbers
import os

import numpy as np

from ._native import _core
from .inputs import prepare_ids

IGNORE = -100
_STATE_FORMAT = "tformer-trainer"


def _frozen(config) -> list:
    """Parameters transformers does not train: final_logits_bias (a buffer) and fixed
    sinusoidal position tables."""
    names = ["final_logits_bias"]
    if config.positions != "learned":
        names += ["src_positions", "tgt_positions"]
    return names


def _check_range(name, value, lo, hi, lo_open=False, hi_open=True):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        raise ValueError(f"{name} must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}, got {value}")
    return float(value)


class Trainer:
    """Trains a tformer.Transformer with AdamW and the paper's schedule.

        >>> trainer = tformer.Trainer(model, warmup_steps=4000, label_smoothing=0.1)
        >>> loss = trainer.step(src_ids, tgt_ids)    # tgt_ids: target sentences, no special tokens

    schedule: "inverse_sqrt" (lr=None: the paper's d^-0.5 * min(step^-0.5, step * warmup^-1.5);
    a number: the same shape peaking at lr), "cosine" (needs total_steps) or "constant".
    clip_norm=None turns gradient clipping off.
    """

    def __init__(self, model, lr=None, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.0, warmup_steps=4000,
                 schedule="inverse_sqrt", label_smoothing=0.1, clip_norm=1.0, dropout=0.1, seed=0,
                 total_steps=None, activation_dropout=0.0):
        from .model import Transformer

        if not isinstance(model, Transformer):
            raise TypeError(f"model must be a tformer.Transformer, got {type(model).__name__}")
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, numbers.Real)):
            raise TypeError(f"lr must be a number > 0 (or None for the paper's schedule), got {type(lr).__name__} {lr!r}")
        if lr is not None and not lr > 0:
            raise ValueError(f"lr must be a number > 0 (or None for the paper's schedule), got {lr!r}")
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.model = model
        self.lr_peak = None if lr is None else float(lr)
        self.betas = (_check_range("betas[0]", betas[0], 0.0, 1.0), _check_range("betas[1]", betas[1], 0.0, 1.0))
        self.eps = _check_range("eps", eps, 0.0, math.inf, lo_open=True)
        self.weight_decay = _check_range("weight_decay", weight_decay, 0.0, math.inf)
        self.label_smoothing = _check_range("label_smoothing", label_smoothing, 0.0, 1.0)
        self.dropout = _check_range("dropout", dropout, 0.0, 1.0)
        self.activation_dropout = _check_range("activation_dropout", activation_dropout, 0.0, 1.0)
        if clip_norm is not None:
            clip_norm = _check_range("clip_norm", clip_norm, 0.0, math.inf, lo_open=True)
        self.clip_norm = clip_norm
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, numbers.Integral):
            raise TypeError(f"warmup_steps must be an int, got {warmup_steps!r}")
        self.warmup_steps = int(warmup_steps)
        self.schedule = schedule
        self.total_steps = 0 if total_steps is None else int(total_steps)
        self.seed = int(seed)
        self.step_count = 0
        self.last_grad_norm = None
        self.learning_rate(1)  # validates the schedule settings (ValueError naming the problem)
        self._graph = _core.TrainGraph(model._core, _frozen(model.config))

    # ------------------------------------------------------------------ schedule

    def learning_rate(self, step: int) -> float:
        return _core.learning_rate(self.schedule, int(step), self.lr_peak or 0.0, self.warmup_steps,
                                   self.total_steps, self.model.config.d_model)

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return self.learning_rate(self.step_count + 1)

    # ------------------------------------------------------------------ batches

    def _batch(self, src_ids, tgt_ids):
        src, src_len = prepare_ids(src_ids, "src_ids")
        if isinstance(tgt_ids, np.ndarray):
            if tgt_ids.ndim != 2:
                raise ValueError(f"tgt_ids: expected a 2-D array or a list of token lists, got shape {tgt_ids.shape}")
            tgt_ids = tgt_ids.tolist()
        if not isinstance(tgt_ids, (list, tuple)):
            raise TypeError(f"tgt_ids must be a list of token-id lists, got {type(tgt_ids).__name__}")
        if len(tgt_ids) != src.shape[0]:
            raise ValueError(f"src_ids has {src.shape[0]} sentences but tgt_ids has {len(tgt_ids)}")
        cfg = self.model.config
        start, eos = cfg.decoder_start_id, cfg.eos_id
        dec = [[start] + list(t) for t in tgt_ids]
        dec_ids, dec_len = prepare_ids(dec, "tgt_ids")  # type and vocabulary checks
        if any(len(t) == 0 for t in tgt_ids):
            raise ValueError("tgt_ids: empty target sentence (a target needs at least one token)")
        labels = np.full(dec_ids.shape, IGNORE, dtype=np.int32)
        for i, t in enumerate(tgt_ids):
            labels[i, : len(t) + 1] = list(t) + [eos]
        if labels.max() >= cfg.tgt_vocab_size:
            raise ValueError(f"tgt_ids: token id {int(labels.max())} is outside the vocabulary [0, {cfg.tgt_vocab_size})")
        return src, src_len, dec_ids, dec_len, labels

    def _step_seed(self) -> int:
        return (self.seed * 0x9E3779B97F4A7C15 + self.step_count + 1) & ((1 << 63) - 1)

    # ------------------------------------------------------------------ training

    def step(self, src_ids, tgt_ids, micro_batches: int = 1) -> float:
        """One update on this batch; returns its loss before the update (mean over target
        tokens, EOS included). micro_batches > 1 accumulates gradients over slices of the
        batch (less memory, same result)."""
        src, src_len, dec, dec_len, labels = self._batch(src_ids, tgt_ids)
        tokens = int((labels != IGNORE).sum())
        n = src.shape[0]
        if isinstance(micro_batches, bool) or not isinstance(micro_batches, numbers.Integral) or micro_batches < 1:
            raise ValueError(f"micro_batches must be an int >= 1, got {micro_batches!r}")
        self._graph.zero_grad()
        loss = 0.0
        seed = self._step_seed()
        bounds = np.linspace(0, n, min(int(micro_batches), n) + 1).astype(int)
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            ws, wt = max(src_len[a:b]), max(dec_len[a:b])
            part_loss, _ = self._graph.run(np.ascontiguousarray(src[a:b, :ws]), src_len[a:b],
                                           np.ascontiguousarray(dec[a:b, :wt]), dec_len[a:b],
                                           np.ascontiguousarray(labels[a:b, :wt]), self.label_smoothing, self.dropout,
                                           self.activation_dropout, seed + k * 0x100000001, 1.0 / tokens)
            loss += part_loss
        norm = self._graph.grad_norm()
        self.last_grad_norm = norm
        multiplier = 1.0
        if self.clip_norm is not None:  # torch.nn.utils.clip_grad_norm_
            multiplier = min(1.0, self.clip_norm / (norm + 1e-6))
        self.step_count += 1
        b1, b2 = self.betas
        self._graph.adamw_step(self.learning_rate(self.step_count), b1, b2, self.eps, self.weight_decay,
                               self.step_count, multiplier)
        return loss / tokens

    def evaluate(self, src_ids, tgt_ids) -> float:
        """Mean loss over the target tokens, no dropout, no update."""
        src, src_len, dec, dec_len, labels = self._batch(src_ids, tgt_ids)
        loss, tokens = self._graph.run(src, src_len, dec, dec_len, labels, self.label_smoothing, 0.0, 0.0, 0, 0.0)
        return loss / tokens

    def gradients(self) -> dict:
        """The gradients of the last step (before clipping), by tformer parameter name."""
        return {name: self._graph.grad(name) for name in self._graph.trainable}

    # ------------------------------------------------------------------ checkpoints

    def _settings(self) -> dict:
        return {"lr": self.lr_peak, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay,
                "warmup_steps": self.warmup_steps, "schedule": self.schedule, "label_smoothing": self.label_smoothing,
                "clip_norm": self.clip_norm, "dropout": self.dropout, "seed": self.seed,
                "total_steps": self.total_steps or None, "activation_dropout": self.activation_dropout}

    def save(self, path) -> None:
        """Writes trainer.json (settings, step) and optimizer.safetensors (AdamW moments).
        Save the model alongside with model.save to resume exactly."""
        from safetensors.numpy import save_file

        from .io import _atomic_write

        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        state = {}
        for name in self._graph.trainable:
            state[f"m.{name}"] = self._graph.moment(name, 0)
            state[f"v.{name}"] = self._graph.moment(name, 1)
        _atomic_write(os.path.join(path, "optimizer.safetensors"), lambda tmp: save_file(state, tmp))
        meta = {"format": _STATE_FORMAT, "step": self.step_count, "settings": self._settings(),
                "parameters": {n: list(self.model._core.parameter(n).shape) for n in self._graph.trainable}}

        def write(tmp):
            with open(tmp, "w") as f:
                json.dump(meta, f, indent=2)

        _atomic_write(os.path.join(path, "trainer.json"), write)

    @classmethod
    def load(cls, path, model) -> "Trainer":
        """A Trainer for `model` restored from `save`: same settings, step count and moments."""
        from .weights import load_safetensors

        path = os.fspath(path)
        meta_path = os.path.join(path, "trainer.json")
        if not os.path.exists(meta_path):
            raise FileNotFoundError(f"{meta_path} not found: not a saved tformer Trainer")
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("format") != _STATE_FORMAT:
            raise ValueError(f"{meta_path}: not a tformer Trainer checkpoint")
        trainer = cls(model, **meta["settings"])
        expected = {n: list(model._core.parameter(n).shape) for n in trainer._graph.trainable}
        if expected != meta["parameters"]:
            names = sorted(set(expected) ^ set(meta["parameters"])) or sorted(
                n for n in expected if expected[n] != meta["parameters"].get(n))
            raise ValueError(f"the checkpoint in {path} is for another model configuration (first difference: "
                             f"{names[0]!r})")
        state = load_safetensors(os.path.join(path, "optimizer.safetensors"))
        for name in trainer._graph.trainable:
            trainer._graph.set_moment(name, 0, state[f"m.{name}"])
            trainer._graph.set_moment(name, 1, state[f"v.{name}"])
        trainer.step_count = int(meta["step"])
        return trainer
