"""Subword tokenizers for training: sentencepiece models trained on the corpus (shared by
both languages or one per side, unigram or BPE), stored in the model directory in the
layout of a Marian (opus-mt) directory, so that `tformer.tokenizers.load_tokenizer(dir)`
and transformers' `MarianTokenizer` read the same files:

    source.spm, target.spm        sentencepiece models (the same model twice when shared)
    vocab.json                    piece -> id of the source side (both sides when shared)
    target_vocab.json             piece -> id of the target side (per-side vocabularies only)
    tokenizer_config.json         {"tokenizer_class": "MarianTokenizer", "separate_vocabs": ...}

Ids: <pad> 0, </s> 1, <unk> 2 (the TransformerConfig defaults pad_id 0, eos_id 1).

    >>> tok = SubwordTokenizer.train(src_texts, tgt_texts, "model_dir", vocab_size=2000)
    >>> tok.encode_source(["le chat"])       # [[..., 1]]  (EOS appended)
    >>> tok.encode_target(["the cat"])       # [[...]]     (no special tokens)
    >>> tok.decode_target([[...]])           # ['the cat']
"""
from __future__ import annotations

import io
import json
import os

import numpy as np

from .atomic_files import atomic_write_bytes

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
MODEL_TYPES = ("unigram", "bpe")
FILES = ("source.spm", "target.spm", "vocab.json", "target_vocab.json", "tokenizer_config.json")


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError:
        raise ImportError("training a tokenizer needs sentencepiece: pip install sentencepiece") from None
    return sentencepiece


def train_sentencepiece(texts, vocab_size: int = 8000, model_type: str = "unigram",
                        character_coverage: float = 1.0, seed: int = 0, max_sentences: int = 2_000_000) -> bytes:
    """Trains a sentencepiece model on `texts` (an iterable of strings); returns the model file's bytes.

    `vocab_size` is an upper bound: a small corpus gets the vocabulary it can fill."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    if not isinstance(vocab_size, int) or vocab_size < 8:
        raise ValueError(f"vocab_size must be an integer >= 8, got {vocab_size!r}")
    spm = _sentencepiece()
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("cannot train a tokenizer on no text")
    model = io.BytesIO()
    # seed_sentencepiece_size and shuffling are seeded by sentencepiece's own random
    # generator; set_random_generator_seed makes a rerun give the same model.
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type=model_type,
        character_coverage=character_coverage, hard_vocab_limit=False,
        pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1, pad_piece=PAD, eos_piece=EOS, unk_piece=UNK,
        input_sentence_size=max_sentences, shuffle_input_sentence=True, num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )
    return model.getvalue()


class _Side:
    """One sentencepiece model plus the piece -> id vocabulary the model's embeddings use."""

    def __init__(self, model_bytes: bytes, vocab: dict, unk_id: int):
        spm = _sentencepiece()
        self.model_bytes = model_bytes
        self.sp = spm.SentencePieceProcessor(model_proto=model_bytes)
        self.vocab = vocab
        self.id_to_piece = {v: k for k, v in vocab.items()}
        self.unk_id = unk_id
        # sentencepiece id -> model id (the identity for tokenizers trained here; opus-mt
        # directories number their vocab.json differently from their .spm files).
        self.table = np.array([vocab.get(self.sp.id_to_piece(i), unk_id) for i in range(self.sp.get_piece_size())],
                              dtype=np.int64)
        self.sp_unk = self.sp.unk_id()

    def encode(self, texts):
        texts = list(texts)
        out = []
        for text, ids in zip(texts, self.sp.encode(texts)):
            if self.sp_unk in ids:
                # an unknown character keeps its own text as a piece (as MarianTokenizer maps
                # it): the vocabulary may know it from the other side's model
                out.append([self.vocab.get(p, self.unk_id) for p in self.sp.encode(text, out_type=str)])
            else:
                out.append(self.table[ids].tolist() if ids else [])
        return out

    def pieces(self, ids):
        return [self.id_to_piece.get(int(i), UNK) for i in ids]


class SubwordTokenizer:
    """Source and target sentencepiece tokenizers of a model directory (see the module doc)."""

    def __init__(self, source: _Side, target: _Side, shared: bool, eos_id: int, pad_id: int, model_type: str = ""):
        self.source, self.target = source, target
        self.shared = shared
        self.eos_id, self.pad_id = eos_id, pad_id
        self.model_type = model_type
        specials = {PAD, EOS, UNK}
        self.special_ids = {i for p, i in target.vocab.items() if p in specials}

    # ------------------------------------------------------------------ construction

    @classmethod
    def train(cls, src_texts, tgt_texts, directory=None, vocab_size: int = 8000, model_type: str = "unigram",
              shared: bool = True, character_coverage: float = 1.0, seed: int = 0) -> "SubwordTokenizer":
        """Trains the tokenizer(s); writes them into `directory` when one is given."""
        src_texts, tgt_texts = list(src_texts), list(tgt_texts)
        if shared:
            model = train_sentencepiece(src_texts + tgt_texts, vocab_size, model_type, character_coverage, seed)
            side = cls._side_from_model(model)
            tok = cls(side, side, True, EOS_ID, PAD_ID, model_type)
        else:
            src = cls._side_from_model(train_sentencepiece(src_texts, vocab_size, model_type, character_coverage, seed))
            tgt = cls._side_from_model(train_sentencepiece(tgt_texts, vocab_size, model_type, character_coverage, seed))
            tok = cls(src, tgt, False, EOS_ID, PAD_ID, model_type)
        if directory is not None:
            tok.save(directory)
        return tok

    @staticmethod
    def _side_from_model(model_bytes: bytes) -> _Side:
        spm = _sentencepiece()
        sp = spm.SentencePieceProcessor(model_proto=model_bytes)
        vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
        return _Side(model_bytes, vocab, UNK_ID)

    @classmethod
    def load(cls, directory) -> "SubwordTokenizer":
        """Reads the tokenizer files of a directory written by `save` (or of an opus-mt directory)."""
        directory = os.fspath(directory)
        missing = [n for n in ("source.spm", "target.spm", "vocab.json") if not os.path.isfile(os.path.join(directory, n))]
        if missing:
            raise FileNotFoundError(f"{directory}: no tokenizer: missing {', '.join(missing)} "
                                    "(train one with `tformer train`, which writes source.spm, target.spm, vocab.json)")
        config = _read_json(os.path.join(directory, "tokenizer_config.json"), missing_ok=True)
        shared = not config.get("separate_vocabs", False)
        src_vocab = _read_json(os.path.join(directory, "vocab.json"))
        tgt_vocab = src_vocab if shared else _read_json(os.path.join(directory, "target_vocab.json"))
        for name, vocab in (("vocab.json", src_vocab), ("target_vocab.json", tgt_vocab)):
            for piece in (EOS, UNK):
                if piece not in vocab:
                    raise ValueError(f"{directory}/{name}: the special token {piece!r} is missing")
        with open(os.path.join(directory, "source.spm"), "rb") as f:
            src_model = f.read()
        with open(os.path.join(directory, "target.spm"), "rb") as f:
            tgt_model = f.read()
        try:
            source = _Side(src_model, src_vocab, src_vocab[UNK])
            target = _Side(tgt_model, tgt_vocab, tgt_vocab[UNK])
        except RuntimeError as e:
            raise ValueError(f"{directory}: unreadable sentencepiece model ({e})") from None
        pad_id = src_vocab.get(PAD, PAD_ID)
        return cls(source, target, shared, src_vocab[EOS], pad_id, config.get("model_type", ""))

    def save(self, directory) -> None:
        """Writes the tokenizer files into `directory`, each atomically."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        atomic_write_bytes(os.path.join(directory, "source.spm"), self.source.model_bytes)
        atomic_write_bytes(os.path.join(directory, "target.spm"), self.target.model_bytes)
        atomic_write_bytes(os.path.join(directory, "vocab.json"), _json_bytes(self.source.vocab))
        if not self.shared:
            atomic_write_bytes(os.path.join(directory, "target_vocab.json"), _json_bytes(self.target.vocab))
        elif os.path.exists(os.path.join(directory, "target_vocab.json")):
            os.unlink(os.path.join(directory, "target_vocab.json"))
        config = {"tokenizer_class": "MarianTokenizer", "separate_vocabs": not self.shared, "model_type": self.model_type,
                  "eos_token": EOS, "unk_token": UNK, "pad_token": PAD}
        atomic_write_bytes(os.path.join(directory, "tokenizer_config.json"), _json_bytes(config))

    # ------------------------------------------------------------------ use

    @property
    def src_vocab_size(self) -> int:
        """The source vocabulary's size (largest id + 1)."""
        return max(self.source.vocab.values()) + 1

    @property
    def tgt_vocab_size(self) -> int:
        """The target vocabulary's size (largest id + 1)."""
        return max(self.target.vocab.values()) + 1

    def encode_source(self, texts) -> list:
        """Source ids as the model reads them: subword ids followed by EOS."""
        return [ids + [self.eos_id] for ids in self.source.encode(texts)]

    def encode_target(self, texts) -> list:
        """Target ids without special tokens (the trainer adds the start token and EOS)."""
        return self.target.encode(texts)

    def decode_target(self, id_lists) -> list:
        """Text of target ids; special tokens are skipped."""
        out = []
        for ids in id_lists:
            pieces = [p for i, p in zip(ids, self.target.pieces(ids)) if int(i) not in self.special_ids]
            out.append(self.target.sp.decode_pieces(pieces))
        return out

    def source_pieces(self, ids) -> list:
        """The source sentencepiece pieces of token ids."""
        return self.source.pieces(ids)

    def target_pieces(self, ids) -> list:
        """The target sentencepiece pieces of token ids."""
        return self.target.pieces(ids)


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def _read_json(path, missing_ok=False) -> dict:
    if missing_ok and not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None


def copy_tokenizer_files(src_dir, dst_dir) -> None:
    """Copies the tokenizer files of `src_dir` that exist into `dst_dir` (atomically each)."""
    for name in FILES:
        path = os.path.join(src_dir, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                atomic_write_bytes(os.path.join(dst_dir, name), f.read())


__all__ = ["SubwordTokenizer", "train_sentencepiece", "copy_tokenizer_files", "atomic_write_bytes"]
