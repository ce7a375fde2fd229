"""Converting the benchmark's random-weight Marian checkpoint for CTranslate2.

No hub is reachable, so the checkpoint has no tokenizer files; CTranslate2's
converter wants a vocabulary. Following shared/ANCHORS.md, we give it a placeholder
one laid out like opus-mt-fr-en's: '</s>' = 0, '<unk>' = 1, 'tok2' ... 'tok59512',
'<pad>' = 59513 (CTranslate2 drops '<pad>' for Marian). Token ids map to the strings
'tok{id}' and back."""
from __future__ import annotations

import os


def token_name(i: int) -> str:
    return {0: "</s>", 1: "<unk>"}.get(i, f"tok{i}")


def token_id(s: str) -> int:
    return {"</s>": 0, "<unk>": 1, "<pad>": 59513}.get(s) if s in ("</s>", "<unk>", "<pad>") else int(s[3:])


class _StubTokenizer:
    """What CTranslate2's Marian loader reads from a tokenizer."""

    eos_token, unk_token, pad_token, bos_token = "</s>", "<unk>", "<pad>", None

    def __init__(self, vocab_size: int):
        self.vocab = {token_name(i): i for i in range(vocab_size - 1)}
        self.vocab["<pad>"] = vocab_size - 1

    def get_vocab(self):
        return dict(self.vocab)

    def __len__(self):
        return len(self.vocab)


def convert(model_dir: str, out_dir: str, vocab_size: int, quantization=None) -> str:
    if os.path.exists(os.path.join(out_dir, "model.bin")):
        return out_dir
    from ctranslate2.converters import transformers as ct2t

    class _Converter(ct2t.TransformersConverter):
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return _StubTokenizer(vocab_size)

    _Converter(model_dir).convert(out_dir, quantization=quantization, force=True)
    return out_dir
