"""CTranslate2 behind a FastAPI front end with tformer serve's request schema, for
bench/bench_serve_load.py: one `translate_batch` per request, run on a thread pool of
`inter_threads` workers (CTranslate2's own way to serve requests in parallel: its
Translator takes `inter_threads` batches at once, each with `intra_threads` threads).

    python bench/ct2_serve_app.py CT2_DIR HF_DIR --port P [--inter-threads 2] [--intra-threads 1]

HF_DIR gives the tokenizer (the sentencepiece files transformers reads).
"""
from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import ctranslate2
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field
from transformers import AutoTokenizer


class TranslateRequest(BaseModel):
    texts: list[str]
    beam_size: Optional[int] = Field(None, ge=1)
    max_length: Optional[int] = Field(None, ge=1)
    min_length: Optional[int] = Field(None, ge=0)


def create_app(ct2_dir, hf_dir, inter_threads, intra_threads):
    translator = ctranslate2.Translator(ct2_dir, device="cpu", inter_threads=inter_threads,
                                        intra_threads=intra_threads)
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    pool = ThreadPoolExecutor(max_workers=inter_threads)
    app = FastAPI()
    counts = {"requests": 0, "texts": 0}

    def run(req):
        tokens = [tokenizer.convert_ids_to_tokens(tokenizer(t).input_ids) for t in req.texts]
        res = translator.translate_batch(tokens, beam_size=req.beam_size or 1, max_decoding_length=req.max_length or 256,
                                         min_decoding_length=req.min_length or 0)
        return [tokenizer.convert_tokens_to_string(r.hypotheses[0]) for r in res]

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/stats")
    async def stats():
        return dict(counts, batches=counts["requests"])

    @app.post("/translate")
    async def translate(req: TranslateRequest):
        out = await asyncio.get_running_loop().run_in_executor(pool, run, req)
        counts["requests"] += 1
        counts["texts"] += len(req.texts)
        return {"translations": out}

    return app


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ct2_dir")
    ap.add_argument("hf_dir")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--inter-threads", type=int, default=2)
    ap.add_argument("--intra-threads", type=int, default=1)
    args = ap.parse_args()
    app = create_app(args.ct2_dir, args.hf_dir, args.inter_threads, args.intra_threads)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
