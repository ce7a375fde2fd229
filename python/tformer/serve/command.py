"""`tformer serve MODEL_DIR`: arguments and start-up (kept apart from the app so that
`tformer info` never imports FastAPI)."""
from __future__ import annotations

import argparse
import os


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("model_dir", help="local Hugging Face model directory (weights, config, tokenizer files)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16 (default float32)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on every request (default: $TFORMER_API_KEY)")
    p.add_argument("--max-batch-size", type=int, default=32, help="sentences per generate call (default 32)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0,
                   help="how long a request waits for others to batch with (default 5; 0 turns batching off)")
    p.add_argument("--max-texts", type=int, default=64, help="texts per request (default 64)")
    p.add_argument("--max-chars", type=int, default=2000, help="characters per text (default 2000)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="request body size (default 1 MiB)")
    p.add_argument("--max-beam-size", type=int, default=16, help="largest beam_size a request may ask (default 16)")
    p.add_argument("--max-pending-texts", type=int, default=4096,
                   help="queued sentences before requests get 503 (default 4096)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for tformer (default: its own choice)")
    p.add_argument("--beam-size", type=int, default=None, help="default beam_size (default: the model dir's)")
    p.add_argument("--max-length", type=int, default=None, help="default max_length (default: the model dir's)")
    p.add_argument("--source-lang", default=None, help="default source language (multilingual models)")
    p.add_argument("--target-lang", default=None, help="default target language (multilingual models)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def run(args) -> int:
    try:
        import uvicorn

        from .app import ServeLimits, create_app
    except ImportError as e:
        raise SystemExit(f"tformer serve needs FastAPI and uvicorn ({e}): pip install fastapi uvicorn")
    import tformer

    if args.threads:
        tformer.set_num_threads(args.threads)
    defaults = {k: v for k, v in dict(beam_size=args.beam_size, max_length=args.max_length,
                                      source_lang=args.source_lang, target_lang=args.target_lang).items()
                if v is not None}
    translator = tformer.Translator(args.model_dir, device=args.device, dtype=args.dtype, **defaults)
    limits = ServeLimits(
        max_batch_size=args.max_batch_size, batch_wait_ms=args.batch_wait_ms, max_texts=args.max_texts,
        max_chars=args.max_chars, max_body_bytes=args.max_body_bytes, max_beam_size=args.max_beam_size,
        max_pending_texts=args.max_pending_texts, api_key=args.api_key or os.environ.get("TFORMER_API_KEY") or None,
    )
    app = create_app(translator, limits)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, workers=1)
    return 0
