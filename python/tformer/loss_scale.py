"""Loss scaling for half-precision training (torch.amp.GradScaler's rules), device-neutral.

The loss (the gradient of the cross-entropy) is multiplied by `scale` before the backward,
so that small float16 activation gradients do not flush to zero; the float32 gradients
are divided by it again inside the AdamW launch (its gradient multiplier), and gradient
clipping sees the unscaled norm. A step whose gradients hold an inf or a NaN is skipped:
the parameters and the AdamW moments stay as they were, and AdamW's step count does not
advance. The global gradient norm, whose sum of squares is accumulated in double, is
inf/NaN exactly when some gradient is, so the check costs nothing extra.

Dynamic scaling (the default for fp16): start at init_scale = 2^16; an overflowing step
multiplies the scale by backoff_factor (0.5); growth_interval (2000) overflow-free steps
in a row multiply it by growth_factor (2), unless that would make it infinite. The scale
is kept in float32, as torch keeps it.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .option_checks import is_real


def _f32(x: float) -> float:
    with np.errstate(over="ignore"):  # an overflow to inf is what the callers test for
        return float(np.float32(x))


def _positive(name, value, lo=0.0):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not value > lo:
        raise ValueError(f"{name} must be a finite number > {lo:g}, got {value!r}")
    return float(value)


class LossScaler:
    """Dynamic (dynamic=True) or static loss scale with torch.amp.GradScaler's update rule.

        >>> scaler = LossScaler()              # 65536.0, x2 every 2000 clean steps, x0.5 on overflow
        >>> scaler.update(found_inf=False)
    """

    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000,
                 dynamic=True):
        self.init_scale = _positive("init_scale", init_scale)
        if not math.isfinite(_f32(self.init_scale)):
            raise ValueError(f"init_scale must fit in float32 (at most 3.4e38), got {init_scale!r}")
        self.growth_factor = _positive("growth_factor", growth_factor, 1.0)
        self.backoff_factor = _positive("backoff_factor", backoff_factor)
        if not self.backoff_factor < 1.0:
            raise ValueError(f"backoff_factor must be in (0, 1), got {backoff_factor!r}")
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, numbers.Integral) \
                or growth_interval < 1:
            raise ValueError(f"growth_interval must be an int >= 1, got {growth_interval!r}")
        self.growth_interval = int(growth_interval)
        self.dynamic = bool(dynamic)
        self.scale = _f32(self.init_scale)
        self.growth_tracker = 0  # overflow-free steps in a row since the last change

    def update(self, found_inf: bool) -> None:
        """After a step: back off on overflow, grow after growth_interval clean steps."""
        if not self.dynamic:
            return
        if found_inf:
            self.scale = _f32(self.scale * self.backoff_factor)
            self.growth_tracker = 0
            return
        self.growth_tracker += 1
        if self.growth_tracker == self.growth_interval:
            grown = _f32(self.scale * self.growth_factor)
            if math.isfinite(grown):
                self.scale = grown
            self.growth_tracker = 0

    # ------------------------------------------------------------------ checkpoints

    def settings(self) -> dict:
        """The constructor's settings, as trainer.json stores them."""
        return {"init_scale": self.init_scale, "growth_factor": self.growth_factor,
                "backoff_factor": self.backoff_factor, "growth_interval": self.growth_interval,
                "dynamic": self.dynamic}

    def state_dict(self) -> dict:
        """The state that changes while training (scale, growth tracker), for checkpoints."""
        return {"scale": self.scale, "growth_tracker": self.growth_tracker}

    def load_state_dict(self, state: dict) -> None:
        """Restores state_dict's state (ValueError for values out of range)."""
        scale = _positive("loss scaler state 'scale'", state["scale"])
        tracker = state["growth_tracker"]
        if isinstance(tracker, bool) or not isinstance(tracker, numbers.Integral) or tracker < 0:
            raise ValueError(f"loss scaler state 'growth_tracker' must be an int >= 0, got {tracker!r}")
        self.scale = _f32(scale)
        self.growth_tracker = int(tracker)

    def __repr__(self) -> str:
        kind = "dynamic" if self.dynamic else "static"
        return f"LossScaler({kind}, scale={self.scale:g}, growth_tracker={self.growth_tracker})"


def make_scaler(loss_scale: str | float | dict | LossScaler | None, precision: str) -> LossScaler | None:
    """Trainer's loss_scale argument -> a LossScaler or None (no scaling).

    None: dynamic for fp16, none for fp32/bf16; "dynamic": dynamic from 2^16; a number: a
    static scale; a dict: LossScaler's settings (as saved in checkpoints); a LossScaler."""
    if loss_scale is None:
        return LossScaler() if precision == "fp16" else None
    if isinstance(loss_scale, LossScaler):
        return loss_scale
    if isinstance(loss_scale, str):
        if loss_scale != "dynamic":
            raise ValueError(f"loss_scale must be None, 'dynamic', a number > 0 or a tformer.LossScaler, "
                             f"got {loss_scale!r}")
        return LossScaler()
    if isinstance(loss_scale, dict):
        return LossScaler(**loss_scale)
    if not is_real(loss_scale):
        raise TypeError(f"loss_scale must be None, 'dynamic', a number > 0 or a tformer.LossScaler, "
                        f"got {type(loss_scale).__name__} {loss_scale!r}")
    return LossScaler(init_scale=_positive("loss_scale", loss_scale), dynamic=False)
