"""`tformer train`: trains a translation model on line-aligned text files.

    tformer train --src train.fr --tgt train.en --valid-src dev.fr --valid-tgt dev.en \\
                  --out model_dir --config small

The model directory holds the latest model (config.json + model.safetensors, loadable with
`tformer.Transformer.load`; int8 with --export-dtype int8), the tokenizer files (trained here unless --tokenizer or
--from-hf gives them; Marian layout, see spm.py), loss.png, and checkpoints/ with the full
training state. A checkpoint is written to a temporary directory, fsynced and renamed, then
the pointer checkpoints/latest is replaced atomically: a killed run (or a power loss) always
leaves the previous complete checkpoint, and `--resume` continues from it with the same
batches (they depend on the seed and the epoch only). `--resume` verifies the checkpoint
first and, when the newest is damaged, warns and resumes from the previous whole one. Ctrl-C saves a checkpoint and exits with status 130.

Data-parallel on several processes, GPUs or machines: start the same command with torchrun
(`torchrun --nproc-per-node 2 -m tformer.cli train ...`); --max-tokens is then per process
and the global batch is world_size × that (see docs/SCALING.md). Rank 0 writes the
checkpoints; a run resumes on any number of processes."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import TypedDict

import numpy as np

from .checkpoint_check import STATE_FILE
from .data import DataError, TokenizedCorpus, corpus_fingerprint, epoch_batches, read_parallel, shard_batch
from .train_checkpoints import Checkpoints, export_model
from .train_eval import evaluate

class _Preset(TypedDict):
    """The TransformerConfig fields a --config preset sets."""
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int


PRESETS: dict[str, _Preset] = {  # the paper's base model, and two sizes that train on a CPU
    "base": dict(d_model=512, encoder_layers=6, decoder_layers=6, encoder_heads=8, decoder_heads=8,
                 encoder_ffn_dim=2048, decoder_ffn_dim=2048),
    "small": dict(d_model=256, encoder_layers=3, decoder_layers=3, encoder_heads=4, decoder_heads=4,
                  encoder_ffn_dim=1024, decoder_ffn_dim=1024),
    "tiny": dict(d_model=128, encoder_layers=2, decoder_layers=2, encoder_heads=4, decoder_heads=4,
                 encoder_ffn_dim=512, decoder_ffn_dim=512),
}
INTERRUPTED = 130


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--src", required=True, help="training source text, one sentence per line (UTF-8)")
    g.add_argument("--tgt", required=True, help="training target text, line-aligned with --src")
    g.add_argument("--valid-src", help="validation source text")
    g.add_argument("--valid-tgt", help="validation target text, line-aligned with --valid-src")
    g.add_argument("--out", required=True, help="model directory to write (created if needed)")
    g.add_argument("--max-length", type=int, default=256,
                   help="longest sentence in tokens; longer training pairs are dropped (default 256)")
    g = p.add_argument_group("model and tokenizer")
    g.add_argument("--config", choices=sorted(PRESETS), default="small", help="model size (default small)")
    g.add_argument("--from-hf", metavar="DIR", help="start from a local Hugging Face Marian (opus-mt) directory "
                   "and its tokenizer instead of a new model")
    g.add_argument("--tokenizer", metavar="DIR", help="use the tokenizer files of DIR instead of training one")
    g.add_argument("--vocab-size", type=int, default=8000, help="sentencepiece vocabulary size, an upper bound "
                   "(default 8000)")
    g.add_argument("--spm-type", choices=["unigram", "bpe"], default="unigram", help="sentencepiece model type")
    g.add_argument("--separate-vocabs", action="store_true", help="one tokenizer per language (default: shared)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--max-tokens", type=int, default=4096, help="padded tokens per batch (default 4096)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the paper's d_model^-0.5 "
                   "schedule)")
    g.add_argument("--warmup-steps", type=int, default=4000)
    g.add_argument("--schedule", choices=["inverse_sqrt", "cosine", "constant"], default="inverse_sqrt",
                   help="learning-rate schedule after the warm-up (cosine decays to 0 at --max-steps)")
    g.add_argument("--label-smoothing", type=float, default=0.1)
    g.add_argument("--dropout", type=float, default=0.1)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--clip-norm", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0, help="model initialisation, batches and dropout")
    g.add_argument("--device", default="cpu", help="where the model trains: cpu (default), cuda or cuda:N")
    g.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="compute precision; bf16/fp16 (CUDA) keep float32 master weights and AdamW moments")
    g.add_argument("--loss-scale", default=None, metavar="dynamic|N",
                   help="loss scaling: 'dynamic' (the default with fp16) or a fixed number")
    g = p.add_argument_group("run")
    g.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    g.add_argument("--epochs", type=int, default=0, help="stop after this many epochs (0: no limit)")
    g.add_argument("--minutes", type=float, default=0, help="stop training after this many minutes (0: no limit)")
    g.add_argument("--eval-every", type=int, default=1000, help="evaluate and checkpoint every N steps")
    g.add_argument("--eval-sentences", type=int, default=500, help="validation sentences translated for BLEU")
    g.add_argument("--eval-beam", type=int, default=1, help="beam size for validation translations (1: greedy)")
    g.add_argument("--log-every", type=int, default=50, help="record the training loss every N steps")
    g.add_argument("--keep", type=int, default=2, help="checkpoints kept (default 2)")
    g.add_argument("--export-dtype", choices=["float32", "int8"], default="float32",
                   help="dtype of the model exported into --out (checkpoints stay float32): int8 writes a "
                        "quantized CPU model about 4x smaller, docs/QUANTIZATION.md (default float32)")
    g.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    g.add_argument("--threads", type=int, default=0, help="CPU threads (default: tformer's choice)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("distributed (start with torchrun; see docs/SCALING.md)")
    g.add_argument("--distributed", action="store_true", help="data-parallel over the processes torchrun "
                   "started (on by itself when the launcher started more than one)")
    g.add_argument("--dist-timeout", type=float, default=300.0, help="seconds a collective waits for the "
                   "slowest process before the run stops with an error naming it (default 300)")
    g.add_argument("--bucket-mb", type=float, default=4.0, help="gradient all-reduce bucket size in MiB")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tformer train", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return p


def run(args) -> int:
    """The command: errors in the data or the arguments end it with a one-line message."""
    from .distributed import DistributedError

    try:
        return train(args)["exit_code"]
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"tformer train: error: {e}", file=sys.stderr)
        return 2
    except DistributedError as e:
        print(f"tformer train: error: {e}", file=sys.stderr)
        sys.stderr.flush()
        # A peer is gone: leaving through the normal exit could block in the collective
        # library's teardown, waiting for it.
        os._exit(3)


# ------------------------------------------------------------------------------ interruption


class _StopOnSigint:
    """The first Ctrl-C asks the loop to save and stop; a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# ------------------------------------------------------------------------------ set-up


def _model_config(args, tokenizer):
    from .config import TransformerConfig

    return TransformerConfig(src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size,
                             shared_embeddings=tokenizer.shared, tied_output=True, pad_id=tokenizer.pad_id,
                             eos_id=tokenizer.eos_id, max_positions=max(args.max_length + 2, 64),
                             **PRESETS[args.config])


def _loss_scale(text):
    if text is None or text == "dynamic":
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--loss-scale must be 'dynamic' or a number, got {text!r}") from None


def _trainer_options(args) -> dict:
    options = dict(lr=args.lr, warmup_steps=args.warmup_steps, schedule=args.schedule,
                   label_smoothing=args.label_smoothing, clip_norm=args.clip_norm or None, dropout=args.dropout,
                   weight_decay=args.weight_decay, seed=args.seed, precision=args.precision,
                   loss_scale=_loss_scale(args.loss_scale))
    if args.schedule == "cosine":
        options["total_steps"] = args.max_steps
    return options


def _check_args(args):
    for name in ("max_length", "max_tokens", "eval_every", "log_every", "keep", "vocab_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if (args.valid_src is None) != (args.valid_tgt is None):
        raise ValueError("--valid-src and --valid-tgt go together")
    if args.schedule == "cosine" and not args.max_steps:
        raise ValueError("--schedule cosine needs --max-steps (the step where the learning rate reaches 0)")
    if args.from_hf and args.tokenizer:
        raise ValueError("--from-hf brings its own tokenizer: leave out --tokenizer")
    if not args.dist_timeout > 0:
        raise ValueError(f"--dist-timeout must be > 0 seconds, got {args.dist_timeout}")
    if not args.bucket_mb >= 0:
        raise ValueError(f"--bucket-mb must be >= 0, got {args.bucket_mb}")
    if args.precision != "fp32" and not args.device.startswith("cuda"):
        raise ValueError(f"--precision {args.precision} (mixed precision) needs a CUDA device, got --device "
                         f"{args.device}")
    _loss_scale(args.loss_scale)


def _join_group(args):
    """The process group when the launcher started several processes (or --distributed)."""
    from . import distributed

    env = distributed.launch_env()
    if env is None:
        if args.distributed:
            raise ValueError("--distributed: no launcher environment (RANK, WORLD_SIZE): start the command with "
                             "torchrun, e.g. torchrun --nproc-per-node 2 -m tformer.cli train ...")
        return None
    if env.world_size == 1 and not args.distributed:
        return None
    return distributed.init(timeout=args.dist_timeout)


def _load_tokenizer(args, pairs, resumed, group=None):
    from .spm import SubwordTokenizer, copy_tokenizer_files

    if resumed:
        return SubwordTokenizer.load(args.out)
    source = args.from_hf or args.tokenizer
    if source:
        tokenizer = SubwordTokenizer.load(source)
        if group is None or group.rank == 0:
            copy_tokenizer_files(source, args.out)
        return tokenizer
    if group is not None and group.rank != 0:  # rank 0 trains it (deterministic) and writes the files
        group.wait_for(0, "tokenizer")
        return SubwordTokenizer.load(args.out)
    tokenizer = SubwordTokenizer.train([s for s, _ in pairs], [t for _, t in pairs], args.out, vocab_size=args.vocab_size,
                                  model_type=args.spm_type, shared=not args.separate_vocabs, seed=args.seed)
    if group is not None:
        group.arrive("tokenizer")
    return tokenizer


def _log(message, bar=None, rank=0):
    if rank != 0:
        return
    if bar is not None and not bar.disable:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ the loop


def train(args) -> dict:
    """Runs `tformer train` with parsed arguments; returns a summary (step, epoch, history,
    stop reason, exit code). The demo calls this too."""
    import tformer

    _check_args(args)
    start_time = time.time()
    group = _join_group(args)
    rank, world = (group.rank, group.world_size) if group else (0, 1)
    threads = args.threads
    if group is not None and not threads:  # the processes of one machine share its cores
        threads = max(1, (os.cpu_count() or 1) // group.env.local_world_size)
    if threads:
        tformer.set_num_threads(threads)
    pairs = read_parallel(args.src, args.tgt)
    valid_pairs = read_parallel(args.valid_src, args.valid_tgt) if args.valid_src else None
    os.makedirs(args.out, exist_ok=True)
    checkpoints = Checkpoints(args.out)
    checkpoint = checkpoints.latest() if args.resume else None
    if args.resume and checkpoint is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {args.out}/checkpoints")
    if checkpoint is None and checkpoints.has_run():
        raise ValueError(f"{args.out} already holds a training run: pass --resume to continue it, or another --out")
    tokenizer = _load_tokenizer(args, pairs, checkpoint is not None, group)
    corpus = TokenizedCorpus.from_texts(pairs, tokenizer, max_length=args.max_length)
    if len(corpus) == 0:
        raise DataError(f"{args.src}: no sentence pair is at most --max-length {args.max_length} tokens long")
    valid = TokenizedCorpus.from_texts(valid_pairs, tokenizer) if valid_pairs else None
    fingerprint = corpus_fingerprint(args.src, args.tgt)
    if checkpoint is not None:
        with open(os.path.join(checkpoint, STATE_FILE), encoding="utf-8") as f:
            state = json.load(f)
        if [f["size"] for f in state.get("data", [])] != [f["size"] for f in fingerprint]:
            raise DataError(f"--resume: the training files differ from the run in {args.out} (their sizes changed)")
        model = tformer.Transformer.load(checkpoint, device=args.device)
        trainer = tformer.Trainer.load(os.path.join(checkpoint, "trainer"), model, distributed=group or False,
                                       bucket_mb=args.bucket_mb)
        _log(f"resuming from {checkpoint} (step {state['step']}, epoch {state['epoch']}"
             + (f"; saved by {state.get('world_size', 1)} processes, continuing on {world}: same global batches"
                if state.get("world_size", 1) != world else "") + ")", rank=rank)
    else:
        model = tformer.from_huggingface(args.from_hf, device=args.device) if args.from_hf else \
            tformer.Transformer(_model_config(args, tokenizer), seed=args.seed, device=args.device)
        trainer = tformer.Trainer(model, **_trainer_options(args), distributed=group or False,
                                  bucket_mb=args.bucket_mb)
        # max_tokens is the GLOBAL budget (per process × processes): the batches, and a
        # resumed run's position in them, do not depend on how many processes share them
        state = {"step": 0, "epoch": 0, "batch": 0, "seed": args.seed, "max_tokens": args.max_tokens * world,
                 "tokens": 0, "seconds": 0.0, "data": fingerprint, "history": []}
    state["world_size"] = world
    seed, max_tokens = state["seed"], state["max_tokens"]  # what the batches of the run depend on
    history = state["history"]
    _log(f"{len(corpus)} training pairs ({corpus.dropped} dropped: too long or empty), "
         f"{len(valid) if valid else 0} validation; vocabulary {tokenizer.src_vocab_size}/{tokenizer.tgt_vocab_size}; "
         f"{model!r}" + (f"; {world} processes ({group.backend}), {max_tokens} tokens per global batch"
                         if group else ""), rank=rank)

    def save():
        state.update(step=trainer.step_count, seconds=state["seconds"] + time.time() - segment_start[0],
                     history=history)
        segment_start[0] = time.time()
        if rank != 0:  # rank 0 writes; the others wait while it is alive (evaluation included)
            group.wait_for(0, f"saved-{trainer.step_count}")
            return None
        path = checkpoints.save(model, trainer, state, keep=args.keep)
        export_model(model, args.out, dtype=args.export_dtype)
        if history:
            from .plots import plot_loss

            plot_loss(history, os.path.join(args.out, "loss.png"), title=os.path.basename(os.path.abspath(args.out)))
        if group is not None:
            group.arrive(f"saved-{trainer.step_count}")
        return path

    def run_eval():
        if valid is None or rank != 0:
            return
        t0 = time.time()
        result = evaluate(model, trainer, tokenizer, valid, max_tokens, args.eval_sentences, args.eval_beam)
        history.append({"step": trainer.step_count, **result})
        state["eval_seconds"] = state.get("eval_seconds", 0.0) + time.time() - t0
        parts = [f"valid loss {result['valid_loss']:.3f}"] + \
            [f"{k} {result[k]:.2f}" for k in ("bleu", "chrf") if k in result] + \
            ([f"exact {100 * result['exact_match']:.1f}%"] if "exact_match" in result else [])
        _log(f"step {trainer.step_count}: " + ", ".join(parts), bar, rank)

    deadline = start_time + 60 * args.minutes if args.minutes > 0 else None
    segment_start = [time.time()]
    reason, exit_code = "done", 0
    from tqdm import tqdm

    bar = tqdm(total=args.max_steps or None, initial=trainer.step_count, unit="step", dynamic_ncols=True,
               disable=args.quiet or rank != 0, file=sys.stderr, mininterval=0.5)
    window_loss, window_steps, window_tokens, window_start = 0.0, 0, 0, time.time()
    step_seconds = 0.0
    with _StopOnSigint() as sigint:
        while True:
            batches = epoch_batches(corpus, max_tokens, seed, state["epoch"])
            while state["batch"] < len(batches):
                stop = [sigint.requested, bool(deadline and time.time() + step_seconds > deadline)]
                if group is not None:  # every rank stops at the same step
                    stop = group.all_reduce(np.array(stop, dtype=np.int64), op="max").tolist()
                if stop[0]:
                    reason = "interrupted"
                elif args.max_steps and trainer.step_count >= args.max_steps:
                    reason = "max_steps"
                elif stop[1]:
                    reason = "time"
                if reason != "done":
                    break
                t0 = time.time()
                idx = batches[state["batch"]]
                loss = trainer.step(*corpus.batch(shard_batch(idx, rank, world)))
                state["batch"] += 1
                tokens = corpus.num_tokens(idx)
                state["tokens"] += tokens
                step_seconds = 0.9 * step_seconds + 0.1 * (time.time() - t0) if step_seconds else time.time() - t0
                window_loss, window_steps, window_tokens = window_loss + loss, window_steps + 1, window_tokens + tokens
                step = trainer.step_count
                if step % args.log_every == 0 or window_steps == args.log_every:
                    elapsed = max(time.time() - window_start, 1e-9)
                    history.append({"step": step, "loss": window_loss / window_steps, "lr": trainer.lr,
                                    "tokens_per_s": window_tokens / elapsed})
                    bar.set_postfix(loss=f"{window_loss / window_steps:.3f}", tok_s=f"{window_tokens / elapsed:.0f}",
                                    lr=f"{trainer.lr:.2e}", epoch=state["epoch"], refresh=False)
                    if bar.disable and step % (10 * args.log_every) == 0:
                        _log(f"step {step}: loss {window_loss / window_steps:.3f}, "
                             f"{window_tokens / elapsed:.0f} tokens/s, lr {trainer.lr:.2e}", rank=rank)
                    window_loss, window_steps, window_tokens, window_start = 0.0, 0, 0, time.time()
                bar.update(1)
                if step % args.eval_every == 0:
                    run_eval()
                    save()
                    if window_steps == 0:
                        window_start = time.time()  # tokens/s counts training only
            if reason != "done":
                break
            state["epoch"] += 1
            state["batch"] = 0
            if args.epochs and state["epoch"] >= args.epochs:
                reason = "epochs"
                break
        bar.close()
        if trainer.step_count and (not history or history[-1].get("step") != trainer.step_count
                                   or "valid_loss" not in history[-1]) and reason != "interrupted":
            run_eval()
        path = save()
    if reason == "interrupted":
        exit_code = INTERRUPTED
        _log(f"interrupted at step {trainer.step_count}: checkpoint saved to {path}; "
             f"continue with the same command and --resume", rank=rank)
    else:
        _log(f"stopped ({reason}) at step {trainer.step_count}, epoch {state['epoch']}: model in {args.out}",
             rank=rank)
    return {"exit_code": exit_code, "reason": reason, "step": trainer.step_count, "epoch": state["epoch"],
            "tokens": state["tokens"], "seconds": state["seconds"], "eval_seconds": state.get("eval_seconds", 0.0),
            "history": history, "checkpoint": path,
            "model": model, "trainer": trainer, "tokenizer": tokenizer}
