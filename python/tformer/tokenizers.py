"""Tokenizers read from a local Hugging Face model directory, giving the ids transformers'
tokenizer gives for the same directory and the same strings back (docs/DECODING.md).

* Marian (opus-mt): `source.spm`, `target.spm`, `vocab.json` — transformers' `MarianTokenizer`:
  sentencepiece pieces mapped through vocab.json (pieces missing from it become `<unk>`), a
  leading `>>xx<<` language code kept whole, EOS appended; decoding skips the special tokens
  and joins pieces with sentencepiece (the source model when the vocabulary is shared, as
  transformers does).
* M2M100: `vocab.json` + `sentencepiece.bpe.model` — `M2M100Tokenizer`: `__en__ … </s>`.
* T5 / mT5 without tokenizer.json: `spiece.model` — the sentencepiece ids and `</s>`, as
  transformers' original (sentencepiece) T5Tokenizer; `<extra_id_N>` sentinels after them.
* Everything else: `tokenizer.json` through the `tokenizers` package (transformers' fast
  tokenizer), with the source-language layout of NLLB (`eng_Latn … </s>`), mBART
  (`… </s> en_XX`), mBART-50 (`en_XX … </s>`) and M2M100 (`__en__ … </s>`) rebuilt per call.

    >>> tok = load_tokenizer("opus-mt-fr-en")
    >>> ids = tok.encode(["Le chat dort."])          # [[..., 0]]
    >>> tok.decode(ids)                               # ['Le chat dort.']

Nothing here loads transformers: it is only the reference the tests compare against.
"""
from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Sequence, TypedDict

if TYPE_CHECKING:
    from .types import PathLike

# transformers' PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES, in its order.
_NAMED_SPECIALS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

# M2M100Tokenizer's language codes (fairseq's lists), each written as __code__.
_M2M100_LANGS = {
    "m2m100": "af am ar ast az ba be bg bn br bs ca ceb cs cy da de el en es et fa ff fi fr fy ga gd gl gu ha he "
              "hi hr ht hu hy id ig ilo is it ja jv ka kk km kn ko lb lg ln lo lt lv mg mk ml mn mr ms my ne nl "
              "no ns oc or pa pl ps pt ro ru sd si sk sl so sq sr ss su sv sw ta th tl tn tr uk ur uz vi wo xh "
              "yi yo zh zu".split(),
    "wmt21": "en ha is ja cs ru zh de".split(),
}

# Source-language layout of the fast-tokenizer families: how a code becomes a token, the
# default source language, and whether the code goes before the text or after its EOS.
_LangLayout = TypedDict("_LangLayout", {"token": str, "default": str, "prefix": bool})
_LANG_FAMILIES: dict[str, _LangLayout] = {
    "nllb": dict(token="{}", default="eng_Latn", prefix=True),
    "nllb_legacy": dict(token="{}", default="eng_Latn", prefix=False),
    "mbart": dict(token="{}", default="en_XX", prefix=False),
    "mbart50": dict(token="{}", default="en_XX", prefix=True),
    "m2m100": dict(token="__{}__", default="en", prefix=True),
}


class Tokenizer:
    """Common interface: `encode(texts, source_lang=None, target_lang=None) -> list of id
    lists` (EOS and language tokens included), `decode(id_lists) -> list[str]` (special
    tokens skipped), `target_prefix(target_lang) -> list of ids or None` (tokens the
    decoder must start with), `languages` (codes accepted, [] for one-language models)."""

    family = "generic"
    languages: list[str] = []
    path: str  # the tokenizer's directory or file (set by each subclass)

    def encode(self, texts: Sequence[str], source_lang: str | None = None,
               target_lang: str | None = None) -> list[list[int]]:
        """Token ids of each text, EOS and language tokens included (source_lang: the
        source's language on multilingual models; None: the tokenizer's default)."""
        raise NotImplementedError

    def decode(self, id_lists: Sequence[Sequence[int]]) -> list[str]:
        """The text of each token-id list, special tokens skipped."""
        raise NotImplementedError

    def target_prefix(self, target_lang: str | None) -> list[int] | None:
        """The token ids the decoder must start with to write target_lang (None: none;
        ValueError for a language the tokenizer does not have)."""
        if target_lang is not None:
            raise ValueError(f"target_lang={target_lang!r}: this {self.family} tokenizer has no target-language tokens")
        return None

    def _no_source_lang(self, source_lang):
        if source_lang is not None:
            raise ValueError(f"source_lang={source_lang!r}: this {self.family} tokenizer has no source-language tokens")

    def __repr__(self):
        return f"tformer.tokenizers.{type(self).__name__}({self.path!r})"


# ---------------------------------------------------------------------------------- files


def _read_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON in the {what} ({e})") from None


def _optional_json(directory, name):
    path = os.path.join(directory, name)
    return _read_json(path, name) if os.path.isfile(path) else {}


def _content(value):
    """A special token as written in tokenizer_config.json: a string or a serialised AddedToken."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def _require(directory, names, family):
    missing = [n for n in names if not os.path.isfile(os.path.join(directory, n))]
    if missing:
        raise FileNotFoundError(
            f"{directory}: {family} tokenizer files missing: {', '.join(missing)} (expected {', '.join(names)})"
        )


# ---------------------------------------------------------------- sentencepiece + vocab.json


class _AddedToken:
    __slots__ = ("content", "id", "lstrip", "rstrip", "single_word", "special")

    def __init__(self, content, id, lstrip=False, rstrip=False, single_word=False, special=True):
        self.content, self.id = content, id
        self.lstrip, self.rstrip, self.single_word, self.special = lstrip, rstrip, single_word, special


class _SentencePieceVocabTokenizer(Tokenizer):
    """The parts of transformers' Python tokenizer (PythonBackend) that Marian and M2M100
    use: special tokens, added tokens split out of the text before sentencepiece (longest
    match first, with their lstrip/rstrip/single_word flags), ids of added tokens first.
    Subclasses supply the sentencepiece side: the methods below that raise NotImplementedError."""

    clean_up_spaces: bool

    def _base_vocab(self) -> dict[str, int]: raise NotImplementedError
    def _piece_to_id(self, piece: str) -> int: raise NotImplementedError
    def _id_to_piece(self, index: int) -> str: raise NotImplementedError
    def _tokenize(self, text: str) -> list[str]: raise NotImplementedError
    def _tokens_to_string(self, tokens: list[str]) -> str: raise NotImplementedError

    def _init_specials(self, tc, defaults):
        # As transformers 5 reads them: special_tokens_map.json only for directories whose
        # tokenizer_config.json has no added_tokens_decoder (older saves), and then over it.
        merged = dict(tc)
        if "added_tokens_decoder" not in tc:
            merged.update(_optional_json(self.path, "special_tokens_map.json"))
        named = {}
        for name in _NAMED_SPECIALS:
            value = _content(merged[name] if name in merged else defaults.get(name))
            if value is not None:
                named[name] = str(value)
        extras = merged["extra_special_tokens"] if "extra_special_tokens" in merged \
            else merged.get("additional_special_tokens")
        if isinstance(extras, dict):
            extras = list(extras.values())
        extras = [str(_content(t)) for t in extras or []]
        self.named_specials = named
        self.added = {}
        for index, tok in (tc.get("added_tokens_decoder") or {}).items():
            self.added[tok["content"]] = _AddedToken(tok["content"], int(index), tok.get("lstrip", False),
                                                     tok.get("rstrip", False), tok.get("single_word", False),
                                                     tok.get("special", False))
        for content, index in _optional_json(self.path, "added_tokens.json").items():
            self.added.setdefault(content, _AddedToken(content, int(index), special=False))
        # As PythonBackend.__init__: special tokens not yet added are added, reusing their
        # vocabulary id or taking the next free one.
        specials = list(dict.fromkeys(list(named.values()) + extras))
        vocab = self._base_vocab()
        vocab.update({c: t.id for c, t in self.added.items()})
        next_id = len(vocab)
        for content in specials:
            if content in self.added or not content:
                continue
            index = vocab.get(content)
            if index is None:
                index, next_id = next_id, next_id + 1
                vocab[content] = index
            self.added[content] = _AddedToken(content, index, special=True)
        self.special_tokens = set(specials) | {c for c, t in self.added.items() if t.special}
        self.special_ids = {self._token_to_id(t) for t in self.special_tokens}
        self.added_by_id = {t.id: t for t in self.added.values()}
        alternatives = sorted(self.added, key=len, reverse=True)
        self._split_re = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")") if alternatives else None

    def _token_to_id(self, token):
        added = self.added.get(token)
        return added.id if added is not None else self._piece_to_id(token)

    def _split_added(self, text):
        """PythonBackend.tokenize: the text split on added tokens, then each other chunk
        through the model's own _tokenize."""
        chunks = [c for c in self._split_re.split(text) if c] if self._split_re else ([text] if text else [])
        for i, chunk in enumerate(chunks):
            tok = self.added.get(chunk)
            if tok is None:
                continue
            left = chunks[i - 1] if i > 0 else None
            right = chunks[i + 1] if i < len(chunks) - 1 else None
            if tok.rstrip and right:
                chunks[i + 1] = right.lstrip()
            if tok.lstrip and left:
                chunks[i - 1] = left.rstrip()
            if tok.single_word:
                if left and left[-1] != " ":
                    chunks[i - 1] += chunk
                    chunks[i] = ""
                elif right and right[0] != " ":
                    chunks[i + 1] = chunk + chunks[i + 1]
                    chunks[i] = ""
        pieces = []
        for chunk in chunks:
            if not chunk:
                continue
            if chunk in self.added or chunk in self.special_tokens:
                pieces.append(chunk)
            else:
                pieces.extend(self._tokenize(chunk))
        return pieces

    def _ids_to_tokens(self, ids):
        tokens = []
        for index in ids:
            index = int(index)
            if index in self.special_ids:
                continue
            added = self.added_by_id.get(index)
            tokens.append(added.content if added is not None else self._id_to_piece(index))
        return tokens

    def _finish_decoded(self, text):
        return _clean_up(text) if self.clean_up_spaces else text

    def decode(self, id_lists):
        return [self._finish_decoded(self._tokens_to_string(self._ids_to_tokens(ids))) for ids in id_lists]

    def _sp_join(self, sp, tokens, sep):
        """transformers' convert_tokens_to_string: special tokens are never passed to
        sentencepiece (decoding skips them, so normally none are left)."""
        out = ""
        current: list[str] = []
        for token in tokens:
            if token in self.special_tokens:
                out += sp.decode_pieces(current) + token + sep
                current = []
            else:
                current.append(token)
        return out + sp.decode_pieces(current)


class MarianTokenizer(_SentencePieceVocabTokenizer):
    """An opus-mt directory's source.spm / target.spm / vocab.json, as transformers'
    MarianTokenizer (a leading `>>xx<<` target-language code is kept whole)."""

    family = "marian"

    def __init__(self, path):
        import sentencepiece

        self.path = path
        tc = _optional_json(path, "tokenizer_config.json")
        _require(path, ["source.spm", "target.spm", "vocab.json"], "Marian")
        self.separate_vocabs = bool(tc.get("separate_vocabs", False))
        self.vocab = _read_json(os.path.join(path, "vocab.json"), "vocabulary")
        if self.separate_vocabs:
            _require(path, ["target_vocab.json"], "Marian (separate_vocabs)")
            target = _read_json(os.path.join(path, "target_vocab.json"), "target vocabulary")
            self.id_to_token = {v: k for k, v in target.items()}
        else:
            self.id_to_token = {v: k for k, v in self.vocab.items()}
        kwargs = tc.get("sp_model_kwargs") or {}
        self.spm_source = sentencepiece.SentencePieceProcessor(**kwargs)
        self.spm_source.Load(os.path.join(path, "source.spm"))
        self.spm_target = sentencepiece.SentencePieceProcessor(**kwargs)
        self.spm_target.Load(os.path.join(path, "target.spm"))
        self.clean_up_spaces = bool(tc.get("clean_up_tokenization_spaces", False))
        self._init_specials(tc, {"unk_token": "<unk>", "eos_token": "</s>", "pad_token": "<pad>"})
        unk = self.named_specials.get("unk_token")
        if unk not in self.vocab:
            raise ValueError(f"{path}/vocab.json: the unknown token {unk!r} is missing from the vocabulary")
        self.unk_id = self.vocab[unk]
        self.eos_id = self._token_to_id(self.named_specials["eos_token"])
        self.special_ids.discard(None)
        # Multilingual opus-mt models take the target language as a leading >>xx<< token.
        self.languages = [] if self.separate_vocabs else \
            [k[2:-2] for k in self.vocab if k.startswith(">>") and k.endswith("<<")]

    def _base_vocab(self):
        return dict(self.vocab)

    def _piece_to_id(self, piece):
        return self.vocab.get(piece, self.unk_id if hasattr(self, "unk_id") else None)

    def _id_to_piece(self, index):
        if index in self.id_to_token:
            return self.id_to_token[index]
        sp = self.spm_target if self.separate_vocabs else self.spm_source
        if 0 <= index < sp.get_piece_size():
            return sp.IdToPiece(index) or self.named_specials["unk_token"]
        return self.named_specials["unk_token"]

    def _tokenize(self, text):
        code = []
        if text.startswith(">>"):
            end = text.find("<<")
            if end != -1:
                code, text = [text[: end + 2]], text[end + 2:]
        return code + self.spm_source.encode(text, out_type=str)

    def _tokens_to_string(self, tokens):
        # MarianTokenizer decodes with the source model unless the vocabularies are separate.
        sp = self.spm_target if self.separate_vocabs else self.spm_source
        return self._sp_join(sp, tokens, " ").replace("\u2581", " ").strip()

    def encode(self, texts, source_lang=None, target_lang=None):
        self._no_source_lang(source_lang)
        prefix = ""
        if target_lang is not None:
            prefix = _marian_code(self, target_lang) + " "
        return [[self._token_to_id(p) for p in self._split_added(prefix + t)] + [self.eos_id] for t in texts]

    def target_prefix(self, target_lang):
        return None  # Marian takes the target language in the source text (encode)


def _marian_code(tok, lang):
    if not isinstance(lang, str):
        raise TypeError(f"target_lang must be a string, got {type(lang).__name__}")
    code = lang if lang.startswith(">>") and lang.endswith("<<") else f">>{lang}<<"
    if not tok.languages:
        raise ValueError(f"target_lang={lang!r}: this Marian model translates into one language "
                         "(its vocabulary has no >>xx<< codes)")
    if code[2:-2] not in tok.languages:
        raise ValueError(f"target_lang={lang!r} is not one of this model's codes: {_some(tok.languages)}")
    return code


def _some(codes, n=12):
    codes = sorted(codes)
    return ", ".join(codes[:n]) + (f", ... ({len(codes)} in all)" if len(codes) > n else "")


class M2M100Tokenizer(_SentencePieceVocabTokenizer):
    """An M2M100 directory's vocab.json + sentencepiece.bpe.model, as transformers'
    M2M100Tokenizer: `__en__ … </s>`; source_lang sets the default source language."""

    family = "m2m100"

    def __init__(self, path, source_lang=None):
        import sentencepiece

        self.path = path
        tc = _optional_json(path, "tokenizer_config.json")
        _require(path, ["vocab.json", "sentencepiece.bpe.model"], "M2M100")
        self.vocab = _read_json(os.path.join(path, "vocab.json"), "vocabulary")
        self.id_to_token = {v: k for k, v in self.vocab.items()}
        self.sp = sentencepiece.SentencePieceProcessor(**(tc.get("sp_model_kwargs") or {}))
        self.sp.Load(os.path.join(path, "sentencepiece.bpe.model"))
        codes = _M2M100_LANGS.get(tc.get("language_codes", "m2m100"))
        if codes is None:
            raise ValueError(f"{path}: unknown language_codes {tc.get('language_codes')!r} in tokenizer_config.json")
        self.languages = list(codes)
        self.lang_token_to_id = {f"__{c}__": len(self.vocab) + i for i, c in enumerate(codes)}
        self.id_to_lang_token = {i: t for t, i in self.lang_token_to_id.items()}
        self.clean_up_spaces = bool(tc.get("clean_up_tokenization_spaces", False))
        # The __xx__ tokens are special (skipped when decoding, never split by sentencepiece)
        # only where the directory lists them, as hub checkpoints do: transformers 5 does
        # not add them itself.
        self._init_specials(tc, {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
                                 "pad_token": "<pad>", "unk_token": "<unk>"})
        self.eos_id = self._token_to_id(self.named_specials["eos_token"])
        self.default_source_lang = source_lang or tc.get("src_lang") or "en"

    def _base_vocab(self):
        return {self._id_to_piece(i): i for i in range(len(self.vocab))}

    def _piece_to_id(self, piece):
        if piece in self.lang_token_to_id:
            return self.lang_token_to_id[piece]
        return self.vocab.get(piece, self.vocab.get(self.named_specials["unk_token"]))

    def _id_to_piece(self, index):
        if index in self.id_to_lang_token:
            return self.id_to_lang_token[index]
        return self.id_to_token.get(index, self.named_specials["unk_token"])

    def _tokenize(self, text):
        return self.sp.encode(text, out_type=str)

    def _tokens_to_string(self, tokens):
        out = ""
        current: list[str] = []
        for token in tokens:
            if token in self.special_tokens:
                out += self.sp.decode(current) + token
                current = []
            else:
                current.append(token)
        return (out + self.sp.decode(current)).strip()

    def lang_id(self, lang, option):
        """The id of language `lang` ('en' or '__en__'); errors name the `option` it came from."""
        if not isinstance(lang, str):
            raise TypeError(f"{option} must be a string, got {type(lang).__name__}")
        token = lang if lang in self.lang_token_to_id else f"__{lang}__"
        if token not in self.lang_token_to_id:
            raise ValueError(f"{option}={lang!r} is not one of this model's languages: {_some(self.languages)}")
        return self._token_to_id(token)

    def encode(self, texts, source_lang=None, target_lang=None):
        src = self.lang_id(source_lang or self.default_source_lang, "source_lang")
        return [[src] + [self._token_to_id(p) for p in self._split_added(t)] + [self.eos_id] for t in texts]

    def target_prefix(self, target_lang):
        return None if target_lang is None else [self.lang_id(target_lang, "target_lang")]


# ------------------------------------------------------------------------- tokenizer.json


class FastTokenizer(Tokenizer):
    """tokenizer.json through the `tokenizers` package, as transformers' fast tokenizers:
    the file's own post-processor (BART: `<s> … </s>`), or for the multilingual families
    the language token placed as their transformers class places it."""

    def __init__(self, path, family="generic", source_lang=None):
        from tokenizers import Tokenizer as _HFTokenizer

        self.path = path
        tc = _optional_json(path, "tokenizer_config.json")
        file = os.path.join(path, "tokenizer.json")
        try:
            self.tok = _HFTokenizer.from_file(file)
        except Exception as e:  # the Rust side raises a plain Exception
            raise ValueError(f"{file}: cannot be read as a tokenizers file ({e})") from None
        self.tok.no_truncation()
        self.tok.no_padding()
        self.family = family
        self.layout = _LANG_FAMILIES.get(family)
        self.clean_up_spaces = bool(tc.get("clean_up_tokenization_spaces", False)) and \
            (type(self.tok.model).__name__ != "BPE"
             or bool(tc.get("clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False)))
        eos = _content(tc.get("eos_token")) or "</s>"
        self.eos_id = self.tok.token_to_id(eos)
        if self.layout is not None:
            if self.eos_id is None:
                raise ValueError(f"{file}: the end-of-sentence token {eos!r} is not in the vocabulary")
            fmt = self.layout["token"]
            vocab = self.tok.get_vocab(with_added_tokens=True)
            if family == "m2m100":
                self.languages = [t[2:-2] for t in vocab if t.startswith("__") and t.endswith("__") and len(t) > 4]
            else:
                pattern = re.compile(r"^[a-z]{2,3}_[A-Za-z]{2,4}$")
                self.languages = [t for t in vocab if pattern.match(t)]
            self.default_source_lang = source_lang or tc.get("src_lang") or self.layout["default"]
            self._fmt = fmt

    def lang_id(self, lang, option):
        """The id of language code `lang`; errors name the `option` it came from."""
        if not isinstance(lang, str):
            raise TypeError(f"{option} must be a string, got {type(lang).__name__}")
        for token in (self._fmt.format(lang), lang):
            index = self.tok.token_to_id(token)
            if index is not None:
                return index
        raise ValueError(f"{option}={lang!r} is not one of this model's languages: {_some(self.languages)}")

    def encode(self, texts, source_lang=None, target_lang=None):
        if self.layout is None:
            self._no_source_lang(source_lang)
            return [e.ids for e in self.tok.encode_batch(list(texts), add_special_tokens=True)]
        lang = self.lang_id(source_lang or self.default_source_lang, "source_lang")
        # Same ids as the TemplateProcessing that transformers installs for src_lang, built
        # per call so that one tokenizer serves several source languages at once.
        prefix, suffix = ([lang], [self.eos_id]) if self.layout["prefix"] else ([], [self.eos_id, lang])
        return [prefix + e.ids + suffix for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

    def target_prefix(self, target_lang):
        if self.layout is None:
            return super().target_prefix(target_lang)
        return None if target_lang is None else [self.lang_id(target_lang, "target_lang")]

    def decode(self, id_lists):
        texts = self.tok.decode_batch([list(map(int, ids)) for ids in id_lists], skip_special_tokens=True)
        return [_clean_up(t) for t in texts] if self.clean_up_spaces else texts


class T5SentencePieceTokenizer(Tokenizer):
    """spiece.model of a T5 / mT5 directory that has no tokenizer.json: the text's
    sentencepiece ids followed by </s> (transformers' T5Tokenizer), special tokens written in
    the text (</s>, <pad>, <unk>, <extra_id_N>) split out as their ids; decoding skips pad,
    </s>, <unk> and the `extra_ids` sentinels (ids from the model's size on)."""

    family = "t5"

    def __init__(self, path):
        import sentencepiece as spm

        self.path = path
        _require(path, ["spiece.model"], "T5")
        tc = _optional_json(path, "tokenizer_config.json")
        self.sp = spm.SentencePieceProcessor(model_file=os.path.join(path, "spiece.model"))
        extra = tc.get("extra_ids", 100)
        if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
            raise ValueError(f"{path}/tokenizer_config.json: extra_ids must be an integer >= 0, got {extra!r}")
        self.extra_ids = extra
        self.eos_id = self.sp.eos_id()
        if self.eos_id < 0:
            raise ValueError(f"{path}/spiece.model has no end-of-sentence piece: not a T5 sentencepiece model")
        size = self.sp.get_piece_size()
        self._skip = {i for i in (self.sp.pad_id(), self.eos_id, self.sp.unk_id()) if 0 <= i < size}
        # Special tokens written in the text are their ids, as transformers splits them out
        # (<extra_id_N> is id size + extra_ids - 1 - N); the text between them is encoded alone.
        specials = {self.sp.id_to_piece(i): i for i in self._skip}
        specials.update({f"<extra_id_{n}>": size + extra - 1 - n for n in range(extra)})
        self._specials = specials
        self._split = re.compile("(" + "|".join(re.escape(t) for t in sorted(specials, key=len, reverse=True)) + ")")

    def _encode_one(self, text):
        ids = []
        for i, part in enumerate(self._split.split(text)):
            if i % 2:
                ids.append(self._specials[part])
            elif part.strip():
                ids += self.sp.encode(part)
        return ids + [self.eos_id]

    def encode(self, texts, source_lang=None, target_lang=None):
        self._no_source_lang(source_lang)
        self.target_prefix(target_lang)
        return [self._encode_one(text) for text in texts]

    def decode(self, id_lists):
        size = self.sp.get_piece_size()
        return [self.sp.decode([int(i) for i in ids if 0 <= int(i) < size and int(i) not in self._skip])
                for ids in id_lists]


def _clean_up(text):
    """transformers' clean_up_tokenization (used when tokenizer_config.json asks for it)."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text


# ------------------------------------------------------------------------------ loading


def load_tokenizer(path: PathLike, source_lang: str | None = None) -> Tokenizer:
    """The tokenizer of a local Hugging Face model directory, chosen as transformers'
    AutoTokenizer chooses it (tokenizer_config.json's tokenizer_class, else config.json's
    model_type). `source_lang` sets the default source language of multilingual models."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"tokenizer directory not found: {path}")
    tc = _optional_json(path, "tokenizer_config.json")
    model_type = _optional_json(path, "config.json").get("model_type")
    cls = str(tc.get("tokenizer_class") or "").replace("Fast", "")
    has = lambda name: os.path.isfile(os.path.join(path, name))  # noqa: E731

    if cls == "MarianTokenizer" or (not cls and model_type == "marian") or (not cls and has("source.spm")):
        return MarianTokenizer(path)
    if cls == "M2M100Tokenizer" or (not cls and model_type == "m2m_100" and not has("tokenizer.json")):
        if has("sentencepiece.bpe.model") or not has("tokenizer.json"):
            return M2M100Tokenizer(path, source_lang)
        return FastTokenizer(path, "m2m100", source_lang)
    if not has("tokenizer.json") and has("spiece.model") and cls in ("T5Tokenizer", ""):
        return T5SentencePieceTokenizer(path)
    if has("tokenizer.json"):
        family = {"NllbTokenizer": "nllb_legacy" if tc.get("legacy_behaviour") else "nllb",
                  "MBartTokenizer": "mbart", "MBart50Tokenizer": "mbart50"}.get(cls)
        if family is None and not cls:
            family = {"mbart": "mbart"}.get(model_type)
        return FastTokenizer(path, family or "generic", source_lang)
    present = sorted(n for n in os.listdir(path) if n.endswith((".json", ".spm", ".model", ".txt")))
    raise FileNotFoundError(
        f"{path}: no tokenizer found: expected tokenizer.json (fast tokenizer), or source.spm + target.spm + "
        f"vocab.json (Marian), or vocab.json + sentencepiece.bpe.model (M2M100), or spiece.model (T5); "
        f"found {present or 'none of them'}"
    )
