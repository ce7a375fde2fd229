"""Pictures of a training run: the loss curve and a cross-attention heatmap (matplotlib,
Agg backend: no display needed). Each PNG is written atomically (atomic_files)."""
from __future__ import annotations

import os

from .atomic_files import atomic_write


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    plt = _pyplot()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def plot_loss(history: list, path, title: str = "training") -> None:
    """Loss curve from a run's history: entries {"step", "loss"} (training) and
    {"step", "valid_loss", "bleu", "chrf"} (evaluations). BLEU/chrF get their own panel."""
    plt = _pyplot()
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    valid = [h for h in history if "valid_loss" in h]
    scored = [h for h in valid if h.get("bleu") is not None]
    panels = 2 if scored else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4), squeeze=False)
    ax = axes[0][0]
    if train:
        ax.plot(*zip(*train), label="train", color="tab:blue", linewidth=1.2)
    if valid:
        ax.plot([h["step"] for h in valid], [h["valid_loss"] for h in valid], "o-", label="validation",
                color="tab:orange", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (label-smoothed cross-entropy)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if train or valid:
        ax.legend()
    if scored:
        ax2 = axes[0][1]
        steps = [h["step"] for h in scored]
        ax2.plot(steps, [h["bleu"] for h in scored], "o-", label="BLEU", markersize=3)
        ax2.plot(steps, [h["chrf"] for h in scored], "s-", label="chrF", markersize=3)
        if any("exact_match" in h for h in scored):
            ax2.plot(steps, [100 * h.get("exact_match", 0.0) for h in scored], "^-", label="exact match %",
                     markersize=3)
        ax2.set_xlabel("step")
        ax2.set_ylim(0, 100)
        ax2.set_title("validation")
        ax2.grid(alpha=0.3)
        ax2.legend()
    _save(fig, path)


def plot_attention(weights, src_pieces, tgt_pieces, path, title: str = "cross-attention") -> None:
    """Heatmap of cross-attention weights (generated length, source length): rows are the
    generated target pieces, columns the source pieces."""
    import numpy as np

    plt = _pyplot()
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim != 2 or weights.shape != (len(tgt_pieces), len(src_pieces)):
        raise ValueError(f"weights: expected shape ({len(tgt_pieces)}, {len(src_pieces)}) (target pieces, "
                         f"source pieces), got {weights.shape}")
    width = max(4.0, 0.42 * len(src_pieces) + 2)
    height = max(3.0, 0.36 * len(tgt_pieces) + 1.5)
    fig, ax = plt.subplots(figsize=(width, height))
    image = ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0.0, vmax=max(float(weights.max()), 1e-6))
    ax.set_xticks(range(len(src_pieces)))
    ax.set_xticklabels(src_pieces, rotation=70, ha="right", fontsize=9)
    ax.set_yticks(range(len(tgt_pieces)))
    ax.set_yticklabels(tgt_pieces, fontsize=9)
    ax.set_xlabel("source pieces")
    ax.set_ylabel("generated pieces")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    _save(fig, path)
