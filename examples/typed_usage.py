"""The public Python API end to end, written to pass `mypy --strict` (tests/test_typing.py).

A small model with random weights (no download), a toy character tokenizer, and then:
forward, generate (beam search, sampling, streaming), save/load, int8, the in-flight
Engine (submit, stream), a Translator, a few training steps and one op on numpy arrays.

    python examples/typed_usage.py
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence

import numpy as np

import tformer
from tformer.generate import GenerationResult
from tformer.tokenizers import Tokenizer
from tformer.translator import TranslationResult

PAD, EOS, BOS = 0, 1, 2
FIRST_CHAR = 3  # ids FIRST_CHAR.. are the letters a-z and the space


class CharTokenizer(Tokenizer):
    """One id per character of 'a'-'z' and ' ' (others dropped), EOS at the end."""

    alphabet = "abcdefghijklmnopqrstuvwxyz "

    def encode(self, texts: Sequence[str], source_lang: str | None = None,
               target_lang: str | None = None) -> list[list[int]]:
        return [[FIRST_CHAR + self.alphabet.index(c) for c in t.lower() if c in self.alphabet] + [EOS] for t in texts]

    def decode(self, id_lists: Sequence[Sequence[int]]) -> list[str]:
        return ["".join(self.alphabet[i - FIRST_CHAR] for i in ids if i >= FIRST_CHAR) for ids in id_lists]


def build_model() -> tformer.Transformer:
    vocab = FIRST_CHAR + len(CharTokenizer.alphabet)
    config = tformer.TransformerConfig(src_vocab_size=vocab, tgt_vocab_size=vocab, d_model=32, encoder_layers=1,
                                       decoder_layers=1, encoder_heads=2, decoder_heads=2, encoder_ffn_dim=64,
                                       decoder_ffn_dim=64, pad_id=PAD, eos_id=EOS, bos_id=BOS)
    return tformer.Transformer(config, seed=0)


def decode(model: tformer.Transformer, src: list[list[int]]) -> None:
    logits: np.ndarray = model.forward(src, [[BOS, 5, 6]] * len(src))
    print("logits", logits.shape)
    results: list[GenerationResult] = model.generate(src, beam_size=2, max_length=8, num_hypotheses=2,
                                                    return_scores=True)
    for r in results:
        print("n-best", r.tokens, "scores", r.scores)
    sampled = model.generate(src, beam_size=1, do_sample=True, sampling_topk=5, seed=7, max_length=8)
    print("sampled", sampled[0].tokens[0])
    token: int
    for token in model.generate_stream(src[0], beam_size=1, max_length=8):
        print("streamed token", token)


def save_and_load(model: tformer.Transformer) -> tformer.Transformer:
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        loaded = tformer.Transformer.load(tmp, device="cpu")
    small = loaded.to(dtype="int8")
    print(small, small.dtype)
    params: dict[str, np.ndarray] = loaded.parameters()
    loaded.set_parameters(params)
    return loaded


def serve(model: tformer.Transformer, src: list[list[int]]) -> None:
    with tformer.Engine(model, max_rows=16) as engine:
        future = engine.submit(src, beam_size=2, max_length=8)
        for token in engine.stream(src[0], max_length=8):
            print("engine token", token)
        results: list[GenerationResult] = future.result()
        print("engine result", results[0].tokens[0], engine.stats()["completed"])
    stop = tformer.CancelToken(timeout=5.0)
    cancelled = model.generate(src, max_length=8, cancel=stop)
    print("cancelled:", cancelled[0].cancelled, "remaining:", stop.remaining)


def translate(model: tformer.Transformer) -> None:
    with tformer.Translator(model, tokenizer=CharTokenizer(), max_length=8) as translator:
        texts: list[str] = translator.translate(["le chat dort"], beam_size=2)
        batch: list[TranslationResult] = translator.translate_batch(["bonjour"], return_scores=True)
        print(texts, batch[0].texts, batch[0].scores)
        partials = translator.stream("bonsoir")
        print("first partial", next(partials))
        partials.close()   # stops the request early


def train(model: tformer.Transformer, src: list[list[int]]) -> None:
    trainer = tformer.Trainer(model, lr=1e-3, warmup_steps=2, label_smoothing=0.1)
    targets = [[5, 6, 7], [8, 9]]
    for step in range(3):
        loss: float = trainer.step(src, targets)
        print(f"step {step}: loss {loss:.3f}, lr {trainer.lr:.2e}")
    print("validation loss", trainer.evaluate(src, targets))


def single_op() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    product: np.ndarray = tformer.ops.gemm(a, a, trans_b=True)   # a @ a.T, float32
    print("gemm", product.tolist())


def main() -> int:
    tformer.set_num_threads(2)
    info: dict[str, object] = tformer.build_info()
    print("tformer", info["version"], "cuda available:", tformer.cuda_available())
    model = build_model()
    src = CharTokenizer().encode(["le chat", "un chien noir"])
    decode(model, src)
    model = save_and_load(model)
    serve(model, src)
    translate(model)
    train(model, src)
    single_op()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
