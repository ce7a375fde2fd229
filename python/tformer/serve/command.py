"""`tformer serve MODEL_DIR`: arguments and start-up (kept apart from the app so that
`tformer info` never imports FastAPI)."""
from __future__ import annotations

import argparse
import os
import sys


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("model_dir", help="model directory: a Hugging Face one (weights, config, tokenizer files), or "
                                     "one tformer wrote (tformer train --out, tformer demo's model/, "
                                     "Transformer.save with the tokenizer files beside it); or a Hugging Face "
                                     "Hub model id such as Helsinki-NLP/opus-mt-fr-en (tformer[hub])")
    p.add_argument("--revision", default=None, help="Hub model ids: branch, tag or commit hash (default main)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--dtype", default=None, help="float32, int8 (CPU; docs/QUANTIZATION.md), float16 or bfloat16 (CUDA) "
                                              "(default: a tformer directory's saved dtype, else float32)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--allowed-hosts", default=None, metavar="NAMES",
                   help="Host header names served, comma-separated ('api.example.com,*.example.org'; '*': any). "
                        "Default: localhost, 127.0.0.1 and [::1] when --host is a loopback address, any otherwise; "
                        "other names get 421 (a guard against DNS rebinding)")
    p.epilog = ("Limits, deadlines, status codes, /stats and reverse proxies: docs/SERVING.md. "
                "Give the API key as TFORMER_API_KEY in the environment.")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="prefer the TFORMER_API_KEY environment variable: every request then needs "
                        "'Authorization: Bearer KEY'. This flag does the same but shows the key in `ps`")
    p.add_argument("--scheduler", default="engine", choices=["engine", "request"],
                   help="engine (default): in-flight batching, every request joins the running decode steps at once, "
                        "whatever its options; request: the request-level batcher (requests with equal options "
                        "that arrive within --batch-wait-ms share one generate call)")
    p.add_argument("--max-rows", type=int, default=256,
                   help="engine: decoder rows per step, a beam request counting beam_size rows per sentence "
                        "(default 256)")
    p.add_argument("--max-batch-tokens", type=int, default=8192,
                   help="engine: source tokens encoded per step for joining requests (default 8192)")
    p.add_argument("--kv-cache-mb", type=float, default=None,
                   help="engine: K/V cache pool in MiB; a request that does not fit waits (default: automatic)")
    p.add_argument("--block-size", type=int, default=16, help="engine: positions per K/V cache block (default 16)")
    p.add_argument("--large-request-every", type=int, default=32,
                   help="engine: small requests first: while one runs, larger requests join (and are admitted) "
                        "every N-th step only (default 32; 1: every step carries every row)")
    p.add_argument("--small-request-rows", type=int, default=4,
                   help="engine: the rows (texts x beam size) of a request that counts as small (default 4)")
    p.add_argument("--update-wait-steps", type=int, default=1024,
                   help="engine: a weight update stops admissions and waits for the running requests; those still "
                        "running after N steps fail (submit again) (default 1024; 0: wait for them all)")
    p.add_argument("--max-batch-size", type=int, default=32,
                   help="request scheduler: sentences per generate call (default 32)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0,
                   help="request scheduler: how long a request waits for others to batch with (default 5; 0 turns "
                        "batching off)")
    p.add_argument("--max-texts", type=int, default=64, help="texts per request (default 64)")
    p.add_argument("--max-chars", type=int, default=2000, help="characters per text (default 2000)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="request body size (default 1 MiB)")
    p.add_argument("--max-beam-size", type=int, default=16, help="largest beam_size a request may ask (default 16)")
    p.add_argument("--max-pending-texts", type=int, default=4096,
                   help="queued sentences (engine: queued or decoding) before requests get 503 (default 4096)")
    p.add_argument("--max-request-tokens", type=int, default=1 << 17,
                   help="largest texts x beam_size x max_length of one request, else 422 (default 131072; 0: none)")
    p.add_argument("--request-timeout-ms", type=float, default=60000.0,
                   help="a request's deadline, the default and the largest timeout_ms a request may ask; past it "
                        "the reply is 504 and its decoding stops (default 60000; 0: none)")
    p.add_argument("--header-timeout", type=float, default=10.0,
                   help="seconds a connection has to send a complete request head, else it is closed (default 10)")
    p.add_argument("--body-timeout", type=float, default=30.0,
                   help="seconds the whole request body has to arrive, else 408 (default 30; 0: none)")
    p.add_argument("--keep-alive-timeout", type=float, default=5.0,
                   help="seconds an idle keep-alive connection stays open between requests (default 5)")
    p.add_argument("--limit-concurrency", type=int, default=None,
                   help="open connections + running requests beyond which requests get 503 (default: 1000, "
                        "or less to stay under the open-file limit)")
    p.add_argument("--max-header-bytes", type=int, default=16384,
                   help="largest request head (request line + headers), else 400 (default 16384)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for tformer (default: its own choice)")
    p.add_argument("--beam-size", type=int, default=None, help="default beam_size (default: the model dir's)")
    p.add_argument("--max-length", type=int, default=None, help="default max_length (default: the model dir's)")
    p.add_argument("--source-lang", default=None, help="default source language (multilingual models)")
    p.add_argument("--target-lang", default=None, help="default target language (multilingual models)")
    p.add_argument("--prefix", default=None, help="default text put before every source (T5)")
    p.add_argument("--task", default=None, help="default task of config.json's task_specific_params whose prefix "
                                                "is used (T5: translation_en_to_de)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def run(args) -> int:
    try:
        import uvicorn

        from .app import ENGINE_KNOBS, ServeLimits, create_app
        from .connections import http_protocol
        from .guard import default_allowed_hosts, parse_allowed_hosts
    except ImportError as e:
        raise SystemExit(f"tformer serve needs FastAPI and uvicorn ({e}): pip install fastapi uvicorn")
    import tformer

    for name in ("header_timeout", "keep_alive_timeout"):
        if not getattr(args, name) > 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be > 0 seconds, got {getattr(args, name)}")
    for name in ("body_timeout", "request_timeout_ms", "max_request_tokens"):
        if getattr(args, name) < 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 0 (0: none), got {getattr(args, name)}")
    try:
        allowed = parse_allowed_hosts(args.allowed_hosts) if args.allowed_hosts is not None else \
            default_allowed_hosts(args.host)
    except ValueError as e:
        raise SystemExit(str(e))
    if args.threads:
        tformer.set_num_threads(args.threads)
    defaults = {k: v for k, v in dict(beam_size=args.beam_size, max_length=args.max_length,
                                      source_lang=args.source_lang, target_lang=args.target_lang,
                                      prefix=args.prefix, task=args.task).items()
                if v is not None}
    from ..hub import ModelNotFoundError

    try:
        translator = tformer.Translator(args.model_dir, device=args.device, dtype=args.dtype,
                                        revision=args.revision, **defaults)
    except (ValueError, TypeError, ModelNotFoundError) as e:  # a bad --task / --prefix / language / model, named
        raise SystemExit(f"tformer serve: {e}")
    limits = ServeLimits(
        max_batch_size=args.max_batch_size, batch_wait_ms=args.batch_wait_ms, max_texts=args.max_texts,
        max_chars=args.max_chars, max_body_bytes=args.max_body_bytes, max_beam_size=args.max_beam_size,
        max_pending_texts=args.max_pending_texts, api_key=_api_key(args.api_key),
        max_request_tokens=args.max_request_tokens, request_timeout_ms=args.request_timeout_ms,
        body_timeout_s=args.body_timeout, allowed_hosts=allowed, scheduler=args.scheduler,
        **{name: getattr(args, name) for name in ENGINE_KNOBS},
    )
    try:
        app = create_app(translator, limits)
    except ValueError as e:  # an engine knob out of range, named
        raise SystemExit(f"tformer serve: {e}")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, workers=1,
                http=http_protocol(args.header_timeout), timeout_keep_alive=args.keep_alive_timeout,
                limit_concurrency=args.limit_concurrency or _default_concurrency(),
                h11_max_incomplete_event_size=args.max_header_bytes)
    return 0


def _api_key(flag):
    """TFORMER_API_KEY first; --api-key works too but is visible to every user (ps)."""
    env = os.environ.get("TFORMER_API_KEY") or None
    if flag:
        if env:
            print("tformer serve: warning: --api-key ignored, TFORMER_API_KEY is set", file=sys.stderr)
            return env
        print("tformer serve: warning: --api-key shows the key to anyone who can list processes (ps); "
              "set TFORMER_API_KEY instead", file=sys.stderr)
        return flag
    return env


def _default_concurrency() -> int:
    """1000 connections + requests, less under a low open-file limit (each connection holds
    one descriptor; the model's files and the process need some)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 1000
    if soft == resource.RLIM_INFINITY:
        return 1000
    return max(16, min(1000, soft - 64))
