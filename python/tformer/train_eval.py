"""Evaluation of `tformer train`: validation loss, translation of token ids, and BLEU, chrF
and exact match against references (sacrebleu)."""
from __future__ import annotations

from .data import fixed_batches


def evaluate(model, trainer, tokenizer, corpus, max_tokens=4096, sentences=500, beam_size=1) -> dict:
    """Validation loss (token-weighted), and BLEU, chrF and exact match of `sentences`
    translations (greedy or beam) against the references (sacrebleu)."""
    total, count = 0.0, 0
    for idx in fixed_batches(corpus, max_tokens):
        src, tgt = corpus.batch(idx)
        n = sum(len(t) + 1 for t in tgt)
        total += trainer.evaluate(src, tgt) * n
        count += n
    result = {"valid_loss": total / max(count, 1)}
    if sentences > 0:
        hyps, refs = translate_ids(model, tokenizer, corpus.src[:sentences], beam_size), \
            [t for _, t in corpus.texts[:sentences]]
        result.update(score(hyps, refs))
    return result


def translate_ids(model, tokenizer, src_ids, beam_size=1) -> list:
    longest = max(len(s) for s in src_ids)
    max_length = min(2 * longest + 16, model.config.max_positions - 1)
    results = model.generate(src_ids, beam_size=beam_size, max_length=max_length, max_batch_size=256)
    return tokenizer.decode_target([r.tokens[0] for r in results])


def score(hyps, refs) -> dict:
    try:
        import sacrebleu
    except ImportError:
        raise ImportError("BLEU and chrF need sacrebleu: pip install sacrebleu") from None
    return {"bleu": sacrebleu.corpus_bleu(hyps, [refs]).score, "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
            "exact_match": sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / max(len(refs), 1)}
