"""tformer.Trainer: one training step = forward, label-smoothed cross-entropy, backward,
gradient clipping and AdamW, all in C++ (cpp/training/). The Python side prepares the
batch (decoder input = [start] + target, labels = target + [eos]), keeps the step count
and the loss scale. With distributed=True each process trains a replica on its part of
the global batch and the gradients are summed over the processes during the backward
(tformer.distributed). precision="bf16"/"fp16" (CUDA) trains in half precision with
float32 master weights, gradients and AdamW moments.

Threads: the model may serve generate calls from other threads while it trains. A step's
forward and backward read the weights alongside them; the AdamW update (and a Trainer or
Trainer.load taking the model over) waits for the running calls and holds new ones back
until it is done (docs/ARCHITECTURE.md, "A model shared by threads")."""
from __future__ import annotations

import json
import math
import numbers
import os
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import distributed as _distributed  # also makes tformer.distributed available (torch loads lazily)
from ._native import _core
from .inputs import prepare_ids
from .loss_scale import LossScaler, make_scaler
from .option_checks import is_integer, is_real

if TYPE_CHECKING:
    from .model import Transformer
    from .types import FloatArray, PathLike, TokenIds

IGNORE = -100
_STATE_FORMAT = "tformer-trainer"
# precision -> the compute dtype of the forward and backward
_PRECISIONS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _frozen(config) -> list:
    """Parameters transformers does not train: final_logits_bias (a buffer) and fixed
    sinusoidal position tables."""
    names = ["final_logits_bias"]
    if config.positions not in ("learned", "none"):
        names += ["src_positions", "tgt_positions"]
    return names


def hash_config(config, shapes) -> int:
    """A 63-bit fingerprint of a model's configuration and parameter shapes (ranks compare it)."""
    import hashlib

    text = json.dumps([repr(config), shapes], sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


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

    precision: "fp32" (default), or "bf16" / "fp16" on CUDA: the model's weights are held in
    that dtype for the forward and backward (a float32 model is converted in place), while
    the gradients, the AdamW moments and a master copy of the weights stay float32 (one
    flat buffer each); AdamW updates the master copy and writes the rounded weights back.

    loss_scale: None (dynamic for fp16, none otherwise), "dynamic" (torch.amp.GradScaler's
    rules from 2^16), a number (a static scale) or a tformer.LossScaler. Steps whose
    gradients overflow are skipped (see last_step_skipped); the learning-rate schedule
    follows step_count, AdamW's bias correction the updates applied (optimizer_steps).

    distributed=True (under torchrun) or a tformer.distributed.ProcessGroup: data-parallel
    training. Each rank passes its own part of the global batch to `step` (see
    tformer.distributed.shard); the loss is normalised by the global token count and the
    gradients are all-reduced in buckets of `bucket_mb` MiB while the backward runs, so every
    rank takes the same update as one process given the whole batch. Parameters are
    broadcast from rank 0 at construction.
    """

    def __init__(self, model: Transformer, lr: float | None = None, betas: Sequence[float] = (0.9, 0.98),
                 eps: float = 1e-9, weight_decay: float = 0.0, warmup_steps: int = 4000,
                 schedule: str = "inverse_sqrt", label_smoothing: float = 0.1, clip_norm: float | None = 1.0,
                 dropout: float = 0.1, seed: int = 0, total_steps: int | None = None,
                 activation_dropout: float = 0.0, distributed: bool | _distributed.ProcessGroup = False,
                 bucket_mb: float = 4.0, precision: str = "fp32",
                 loss_scale: str | float | LossScaler | None = None) -> None:
        from .model import Transformer

        if not isinstance(model, Transformer):
            raise TypeError(f"model must be a tformer.Transformer, got {type(model).__name__}")
        if lr is not None and not is_real(lr):
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
        if not is_integer(warmup_steps):
            raise TypeError(f"warmup_steps must be an int, got {warmup_steps!r}")
        self.warmup_steps = int(warmup_steps)
        self.schedule = schedule
        self.total_steps = 0 if total_steps is None else int(total_steps)
        self.seed = int(seed)
        self.step_count = 0
        self.last_grad_norm: float | None = None
        self.learning_rate(1)  # validates the schedule settings (ValueError naming the problem)
        if not is_real(bucket_mb) or not bucket_mb >= 0:
            raise ValueError(f"bucket_mb must be a number >= 0, got {bucket_mb!r}")
        if not isinstance(precision, str) or precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
        compute = _PRECISIONS[precision]
        if precision != "fp32" and not model.device.startswith("cuda"):
            raise ValueError(f"precision={precision!r} (mixed precision) needs a CUDA model, this one is on "
                             f"{model.device}: use precision='fp32' or model.to('cuda')")
        if model.dtype == "int8":
            raise ValueError("int8 models are for inference: train in float32, then convert with "
                             "model.to(dtype='int8')")
        if model.dtype not in ("float32", compute):
            raise ValueError(f"precision={precision!r} cannot train a {model.dtype} model: give a float32 model"
                             + (f" (or a {compute} one)" if precision != "fp32" else ""))
        self.precision = precision
        self.scaler = make_scaler(loss_scale, precision)
        self.optimizer_steps = 0  # AdamW updates applied (steps skipped for overflow do not count)
        self.last_step_skipped = False
        self._last_scale = 1.0
        self.group: _distributed.ProcessGroup | None = None
        self._reducer: _distributed.GradientReducer | None = None
        if distributed is not False and distributed is not None:
            # before the graph: rank 0's weights are broadcast as they are (float32), so that
            # every rank's master copy starts from the same values, not from rounded ones
            self.group = self._join(distributed)
        self._graph = _core.TrainGraph(model._core, _frozen(model.config), int(bucket_mb * (1 << 20)), compute)
        if self.group is not None:
            self._reducer = _distributed.GradientReducer(self.group, self._graph)

    # ------------------------------------------------------------------ distributed

    def _join(self, distributed: bool | _distributed.ProcessGroup) -> _distributed.ProcessGroup:
        dist_mod = _distributed
        if distributed is True:
            group = dist_mod.init(device=self.model.device)
        elif isinstance(distributed, dist_mod.ProcessGroup):
            group = distributed
        else:
            raise TypeError(f"distributed must be True, False or a tformer.distributed.ProcessGroup, "
                            f"got {type(distributed).__name__}")
        # Every rank must train the same architecture; then rank 0's weights win.
        names = self.model._core.parameter_names()
        mine = hash_config(self.model.config, [list(self.model._core.parameter(n).shape) for n in names])
        hashes = group.all_gather_int(mine)
        if len(set(hashes)) != 1:
            other = next(r for r, h in enumerate(hashes) if h != hashes[0])
            raise ValueError(f"rank {other} has a different model configuration than rank 0: every rank must "
                             "build the same model")
        for name in names:
            value = group.broadcast(np.asarray(self.model._core.parameter(name)))
            if group.rank != 0:
                self.model._core.set_parameter(name, value)
        return group

    @property
    def rank(self) -> int:
        """This process's rank in data-parallel training (0 without it)."""
        return self.group.rank if self.group else 0

    @property
    def world_size(self) -> int:
        """The number of data-parallel processes (1 without distributed training)."""
        return self.group.world_size if self.group else 1

    # ------------------------------------------------------------------ schedule

    def learning_rate(self, step: int) -> float:
        """The learning rate of 1-based `step` under this trainer's schedule."""
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
        # each rank draws its own dropout masks (rank 0 the same as a single process)
        return (self.seed * 0x9E3779B97F4A7C15 + self.step_count + 1 + self.rank * 0xD1B54A32D192ED03) \
            & ((1 << 63) - 1)

    # ------------------------------------------------------------------ training

    def step(self, src_ids: TokenIds, tgt_ids: TokenIds, micro_batches: int = 1) -> float:
        """One update on this batch; returns its loss before the update (mean over target
        tokens, EOS included). micro_batches > 1 accumulates gradients over slices of the
        batch (less memory, same result). Distributed: this rank's part of the global batch
        (it may be empty); the loss returned is the global batch's, the same on every rank."""
        if not is_integer(micro_batches) or micro_batches < 1:
            raise ValueError(f"micro_batches must be an int >= 1, got {micro_batches!r}")
        empty = self.group is not None and len(src_ids) == 0 and len(tgt_ids) == 0
        if not empty:
            src, src_len, dec, dec_len, labels = self._batch(src_ids, tgt_ids)
        local_tokens = 0 if empty else int((labels != IGNORE).sum())
        # every rank normalises by the global token count: the summed gradients are then
        # those of the global batch's mean loss
        tokens = local_tokens if self.group is None else int(self.group.all_reduce([local_tokens])[0])
        if tokens == 0:
            raise ValueError("the global batch has no sentences: every rank got an empty part")
        self._graph.zero_grad()
        loss = 0.0
        seed = self._step_seed()
        scale = self.scaler.scale if self.scaler is not None else 1.0
        self._last_scale = scale
        if empty:
            assert self._reducer is not None  # made with the group (empty needs a group)
            self._reducer.reduce_all()  # this rank contributes zeros, in the same bucket order
        else:
            n = src.shape[0]
            bounds = np.linspace(0, n, min(int(micro_batches), n) + 1).astype(int)
            last = len(bounds) - 2
            for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
                ws, wt = max(src_len[a:b]), max(dec_len[a:b])
                # only the last micro-batch's backward finishes the gradients
                ready = self._reducer.on_ready if self._reducer is not None and k == last else None
                part_loss, _ = self._graph.run(np.ascontiguousarray(src[a:b, :ws]), src_len[a:b],
                                               np.ascontiguousarray(dec[a:b, :wt]), dec_len[a:b],
                                               np.ascontiguousarray(labels[a:b, :wt]), self.label_smoothing,
                                               self.dropout, self.activation_dropout, seed + k * 0x100000001,
                                               scale / tokens, ready)
                loss += part_loss
            if self._reducer is not None:
                self._reducer.finish()
        if self.group is not None:
            loss = float(self.group.all_reduce([loss])[0])
        # inf/NaN exactly when some (scaled) gradient overflowed; unscaled for clipping
        norm = self._graph.grad_norm() / scale
        self.last_grad_norm = norm
        self.step_count += 1
        self.last_step_skipped = self.scaler is not None and not math.isfinite(norm)
        if self.scaler is not None:
            self.scaler.update(found_inf=self.last_step_skipped)
        if self.last_step_skipped:  # GradScaler.step: no update, parameters and moments untouched
            return loss / tokens
        multiplier = 1.0
        if self.clip_norm is not None:  # torch.nn.utils.clip_grad_norm_
            multiplier = min(1.0, self.clip_norm / (norm + 1e-6))
        self.optimizer_steps += 1
        b1, b2 = self.betas
        # the unscaling rides on AdamW's gradient multiplier (exact for power-of-two scales)
        self._graph.adamw_step(self.learning_rate(self.step_count), b1, b2, self.eps, self.weight_decay,
                               self.optimizer_steps, multiplier / scale)
        return loss / tokens

    @property
    def loss_scale(self) -> float:
        """The scale the next step multiplies the loss by (1.0 without loss scaling)."""
        return self.scaler.scale if self.scaler is not None else 1.0

    def evaluate(self, src_ids: TokenIds, tgt_ids: TokenIds) -> float:
        """Mean loss over the target tokens, no dropout, no update."""
        src, src_len, dec, dec_len, labels = self._batch(src_ids, tgt_ids)
        loss, tokens = self._graph.run(src, src_len, dec, dec_len, labels, self.label_smoothing, 0.0, 0.0, 0, 0.0)
        return loss / tokens

    def gradients(self) -> dict[str, FloatArray]:
        """The gradients of the last step (before clipping, loss scale divided out), by tformer
        parameter name."""
        if self._last_scale == 1.0:  # views of the flat gradient buffer
            return {name: self._graph.grad(name) for name in self._graph.trainable}
        return {name: np.true_divide(self._graph.grad(name), np.float32(self._last_scale), dtype=np.float32)
                for name in self._graph.trainable}

    def master_weights(self) -> dict[str, FloatArray]:
        """The float32 master copy of each trained parameter (bf16/fp16 precision; with fp32
        the model's own parameters are the master)."""
        if self.precision == "fp32":
            params = self.model.parameters()  # copies, one consistent set
            return {name: params[name] for name in self._graph.trainable}
        return {name: self._graph.master(name) for name in self._graph.trainable}

    # ------------------------------------------------------------------ checkpoints

    def _settings(self) -> dict:
        return {"lr": self.lr_peak, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay,
                "warmup_steps": self.warmup_steps, "schedule": self.schedule, "label_smoothing": self.label_smoothing,
                "clip_norm": self.clip_norm, "dropout": self.dropout, "seed": self.seed,
                "total_steps": self.total_steps or None, "activation_dropout": self.activation_dropout,
                "precision": self.precision,
                "loss_scale": self.scaler.settings() if self.scaler is not None else None}

    def save(self, path: PathLike) -> None:
        """Writes trainer.json (settings, step, loss scale) and optimizer.safetensors (AdamW
        moments, and the float32 master weights with bf16/fp16). Save the model alongside
        with model.save to resume exactly."""
        from safetensors.numpy import save_file

        from .atomic_files import atomic_write

        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        state = {}
        for name in self._graph.trainable:
            state[f"m.{name}"] = self._graph.moment(name, 0)
            state[f"v.{name}"] = self._graph.moment(name, 1)
            if self.precision != "fp32":
                state[f"master.{name}"] = self._graph.master(name)
        atomic_write(os.path.join(path, "optimizer.safetensors"), lambda tmp: save_file(state, tmp))
        meta = {"format": _STATE_FORMAT, "step": self.step_count, "optimizer_step": self.optimizer_steps,
                "loss_scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "settings": self._settings(),
                "parameters": {n: list(self.model._core.parameter(n).shape) for n in self._graph.trainable}}

        def write(tmp):
            with open(tmp, "w") as f:
                json.dump(meta, f, indent=2)

        atomic_write(os.path.join(path, "trainer.json"), write)

    @classmethod
    def load(cls, path: PathLike, model: Transformer, distributed: bool | _distributed.ProcessGroup = False,
             bucket_mb: float = 4.0) -> "Trainer":
        """A Trainer for `model` restored from `save`: same settings, step count and moments.
        A checkpoint of a distributed run resumes on any number of ranks (the state is the
        same on every rank)."""
        from .weights import load_safetensors

        path = os.fspath(path)
        meta_path = os.path.join(path, "trainer.json")
        if not os.path.exists(meta_path):
            raise FileNotFoundError(f"{meta_path} not found: not a saved tformer Trainer")
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("format") != _STATE_FORMAT:
            raise ValueError(f"{meta_path}: not a tformer Trainer checkpoint")
        trainer = cls(model, **meta["settings"], distributed=distributed, bucket_mb=bucket_mb)
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
            if trainer.precision != "fp32":
                trainer._graph.set_master(name, state[f"master.{name}"])
        trainer.step_count = int(meta["step"])
        trainer.optimizer_steps = int(meta.get("optimizer_step", meta["step"]))  # older files: no skipped steps
        if trainer.scaler is not None and meta.get("loss_scaler") is not None:
            trainer.scaler.load_state_dict(meta["loss_scaler"])
        return trainer
