"""tformer.Translator: text in, text out, on top of `Transformer.generate` (docs/DECODING.md).

    >>> translator = tformer.Translator("opus-mt-fr-en")                # a local HF directory
    >>> translator = tformer.Translator("Helsinki-NLP/opus-mt-fr-en")   # or a Hub id (tformer[hub])
    >>> translator.translate(["Le chat dort."])
    ['The cat is sleeping.']
    >>> translator.translate(["Le chat dort."], beam_size=5, num_hypotheses=2)
    [['The cat is sleeping.', 'The cat sleeps.']]
    >>> fast = tformer.Translator("opus-mt-fr-en", dtype="int8")      # int8 weights, CPU (docs/QUANTIZATION.md)
    >>> nllb = tformer.Translator("nllb-200-distilled-600M", source_lang="fra_Latn")
    >>> nllb.translate(["Le chat dort."], target_lang="deu_Latn")
    >>> t5 = tformer.Translator("t5-small", source_lang="en", target_lang="fr")  # task prefix
    >>> t5.translate(["The cat sleeps."])     # model input: "translate English to French: The cat sleeps."
"""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Generator, Sequence

from .generation_config import generation_defaults
from .tokenizers import Tokenizer, load_tokenizer

if TYPE_CHECKING:
    from .engine import Engine, EngineFuture
    from .model import Transformer
    from .types import PathLike

_DEFAULT_MAX_LENGTH = 256  # generate's own default, lowered to what the positions table allows


class TranslationResult:
    """One source sentence's result: generate's `.tokens` / `.scores` / `.attention` (the
    n-best, best first) plus `.texts`, the detokenized hypotheses (target-language token
    removed); `.cancelled` when a CancelToken (translate_batch's cancel=) stopped it."""

    __slots__ = ("tokens", "scores", "attention", "texts", "cancelled")
    tokens: list[list[int]]
    scores: list[float]
    attention: list[Any]
    texts: list[str]
    cancelled: bool

    def __init__(self, tokens: list[list[int]], scores: list[float], attention: list[Any], texts: list[str],
                 cancelled: bool = False) -> None:
        self.tokens, self.scores, self.attention, self.texts = tokens, scores, attention, texts
        self.cancelled = cancelled

    def __repr__(self) -> str:
        return f"TranslationResult(texts={self.texts!r}, scores={self.scores!r})"


def _max_positions(model):
    hf = (model.config.extra or {}).get("hf_config") or {}
    if hf.get("max_position_embeddings"):
        return int(hf["max_position_embeddings"])
    return int(model.config.max_positions) - int(model.config.position_offset or 0)


def _task_prefixes(model) -> dict:
    """task -> text prefix from config.json's task_specific_params (T5: translation_en_to_fr:
    "translate English to French: ", summarization: "summarize: ")."""
    hf = (model.config.extra or {}).get("hf_config") or {}
    params = hf.get("task_specific_params") or {}
    if not isinstance(params, dict):
        return {}
    return {task: p["prefix"] for task, p in params.items() if isinstance(p, dict) and isinstance(p.get("prefix"), str)}


def _check_prefix(prefix):
    if prefix is not None and not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
    return prefix


def _without_prefix(tokens, prefix):
    """The forced language token is part of generate's tokens, not of the text."""
    return tokens[len(prefix):] if prefix and tokens[:len(prefix)] == list(prefix) else tokens


def _check_texts(texts):
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, got a str (wrap one sentence as [text])")
    if not isinstance(texts, (list, tuple)):
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise ValueError("texts is empty: pass at least one sentence")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"texts[{i}] is empty (or only whitespace)")
    return list(texts)


class Translator:
    """Translates text with a Transformer and its Hugging Face tokenizer.

    model_or_path: a local Hugging Face directory (MarianMT, BART, mBART, M2M100, NLLB, T5),
      loaded with `tformer.from_huggingface` on `device` / `dtype`, tokenizer and generation
      defaults (generation_config.json) from the same directory; or a directory tformer wrote
      (`Transformer.save` plus tokenizer files, `tformer train --out`, `tformer demo`'s model/),
      loaded with `Transformer.load` in its saved dtype unless `dtype` is given; or, where no such directory
      exists, a Hugging Face Hub model id ("Helsinki-NLP/opus-mt-fr-en", at `revision=`: a
      branch, tag or commit) fetched into the Hugging Face cache (tformer[hub]); or a `tformer.Transformer`
      (moved to `device` / `dtype` when given), with `tokenizer=` a directory or a
      `tformer.tokenizers.Tokenizer`.
    defaults: generate options used by every call (they win over the directory's), plus
      `source_lang` / `target_lang` for multilingual models, and for models that take a task
      prefix (T5): `prefix=` (text put before every source) or `task=` (a key of config.json's
      task_specific_params, e.g. "translation_en_to_fr", whose prefix is used). For a T5 model
      whose tokenizer has no language tokens, source_lang + target_lang select the task
      translation_<source>_to_<target>. translate/translate_batch take the same three per call.
    """

    def __init__(self, model_or_path: Transformer | PathLike, device: str | None = None, dtype: str | None = None, *,
                 tokenizer: Tokenizer | PathLike | None = None, revision: str | None = None,
                 **defaults: Any) -> None:
        from .hub import resolve_model_dir
        from .model import Transformer
        from .model_dirs import load_model_dir

        dir_defaults = {}
        if isinstance(model_or_path, (str, os.PathLike)):
            path = resolve_model_dir(model_or_path, revision=revision)  # a Hub id -> its cached snapshot
            self.model = load_model_dir(path, device, dtype)
            dir_defaults = generation_defaults(path, _max_positions(self.model))
            tokenizer = path if tokenizer is None else tokenizer
        elif isinstance(model_or_path, Transformer):
            if revision is not None:
                raise ValueError("revision= is for Hugging Face Hub ids; Translator(model) got a loaded Transformer")
            if tokenizer is None:
                raise ValueError("Translator(model) needs tokenizer=: the Hugging Face directory holding the "
                                 "tokenizer files (or a tformer.tokenizers.Tokenizer)")
            self.model = model_or_path.to(device, dtype)
        else:
            raise TypeError("model_or_path must be a tformer.Transformer or the path of a model "
                            f"directory (tformer's or Hugging Face's) or Hub id, got {type(model_or_path).__name__}")
        self.source_lang = defaults.pop("source_lang", None)
        self.target_lang = defaults.pop("target_lang", None)
        self.prefix = _check_prefix(defaults.pop("prefix", None))
        self.task = defaults.pop("task", None)
        self.task_prefixes = _task_prefixes(self.model)
        if isinstance(tokenizer, Tokenizer):
            self.tokenizer = tokenizer
        elif isinstance(tokenizer, (str, os.PathLike)):
            self.tokenizer = load_tokenizer(tokenizer, source_lang=self.source_lang)
        else:
            raise TypeError(f"tokenizer must be a directory or a tformer.tokenizers.Tokenizer, "
                            f"got {type(tokenizer).__name__}")
        self._text_prefix(self.prefix, self.task, self.source_lang, self.target_lang)  # errors now, not later
        self.max_positions = _max_positions(self.model)
        self.defaults = {"max_length": min(_DEFAULT_MAX_LENGTH, self.max_positions - 1), **dir_defaults,
                         **defaults}
        self._engine_lock = threading.Lock()
        self._engine: Engine | None = None  # started by the first submit / translate_async / stream (start_engine)

    def __repr__(self) -> str:
        return f"tformer.Translator({self.model!r}, tokenizer={self.tokenizer!r}, defaults={self.defaults!r})"

    def _languages_select_task(self):
        return not self.tokenizer.languages and bool(self.task_prefixes)

    def _text_prefix(self, prefix, task, source_lang, target_lang):
        """The text put before each source: prefix, else task's, else (T5) the translation
        task of source_lang -> target_lang; '' when none applies."""
        if prefix is not None and task is not None:
            raise ValueError("pass prefix or task, not both")
        if prefix is not None:
            return _check_prefix(prefix)
        if task is None and self._languages_select_task() and (source_lang or target_lang):
            if not (source_lang and target_lang):
                raise ValueError("this model selects its task prefix from the languages: give both source_lang and "
                                 "target_lang (or prefix= / task=)")
            task = f"translation_{source_lang}_to_{target_lang}"
        if task is None:
            return ""
        if not isinstance(task, str):
            raise TypeError(f"task must be a string, got {type(task).__name__}")
        if task not in self.task_prefixes:
            known = ", ".join(sorted(self.task_prefixes)) or "none (config.json has no task_specific_params)"
            raise ValueError(f"task {task!r} is not one of this model's tasks: {known}")
        return self.task_prefixes[task]

    def _source(self, texts, source_lang, target_lang, prefix, task):
        """(model input texts, the languages left for the tokenizer)."""
        texts = _check_texts(texts)
        languages_given = bool(source_lang or target_lang)
        source_lang = source_lang or self.source_lang
        target_lang = target_lang or self.target_lang
        # The call's own prefix, task or (T5) languages win over the Translator's prefix / task.
        if prefix is None and task is None and not (languages_given and self._languages_select_task()):
            prefix, task = self.prefix, self.task
        text_prefix = self._text_prefix(prefix, task, source_lang, target_lang)
        if self._languages_select_task():  # the languages went into the prefix
            source_lang = target_lang = None
        return [text_prefix + t for t in texts], source_lang, target_lang

    def encode(self, texts: Sequence[str], source_lang: str | None = None, target_lang: str | None = None,
               prefix: str | None = None, task: str | None = None) -> list[list[int]]:
        """Token ids of the source texts (task prefix included), as the model's Hugging Face
        tokenizer gives them."""
        return self._source_ids(texts, source_lang, target_lang, prefix, task)[0]

    def _source_ids(self, texts, source_lang, target_lang, prefix, task):
        """(source ids, the target language left for the tokenizer's forced target prefix)."""
        texts, source_lang, target_lang = self._source(texts, source_lang, target_lang, prefix, task)
        return self.tokenizer.encode(texts, source_lang=source_lang, target_lang=target_lang), target_lang

    def _generate_options(self, count, target_lang, options):
        """(generate options for `count` sources, the forced target-language prefix or None)."""
        options = {**self.defaults, **options}
        prefix = self.tokenizer.target_prefix(target_lang)
        if prefix:
            if options.get("target_prefix") is not None:
                raise ValueError("pass target_lang or target_prefix, not both")
            options["target_prefix"] = [list(prefix) for _ in range(count)]
        return options, prefix

    def _request(self, texts, source_lang, target_lang, prefix, task, options):
        """(source ids, generate options, the forced target-language prefix or None)."""
        src_ids, target_lang = self._source_ids(texts, source_lang, target_lang, prefix, task)
        return (src_ids, *self._generate_options(len(src_ids), target_lang, options))

    def _translate_ids(self, src_ids, target_lang, options):
        """translate_batch on ids that _source_ids gave (tformer translate tokenizes each
        chunk once, to sort it by length, and translates the sorted batches from the ids)."""
        options, prefix = self._generate_options(len(src_ids), target_lang, options)
        return self._results(self.model.generate(src_ids, **options), prefix)

    def _results(self, results, prefix):
        out = []
        for result in results:
            hyps = [_without_prefix(list(h), prefix) for h in result.tokens]
            out.append(TranslationResult(result.tokens, result.scores, result.attention,
                                         self.tokenizer.decode(hyps), result.cancelled))
        return out

    def translate_batch(self, texts: Sequence[str], source_lang: str | None = None, target_lang: str | None = None,
                        prefix: str | None = None, task: str | None = None,
                        **options: Any) -> list[TranslationResult]:
        """`model.generate` on the tokenized texts: one TranslationResult per text (tokens,
        scores, attention as generate returns them, plus `.texts`). `cancel=`: a
        tformer.CancelToken or one per text, as generate's."""
        src_ids, target_lang = self._source_ids(texts, source_lang, target_lang, prefix, task)
        return self._translate_ids(src_ids, target_lang, options)

    def _texts(self, results, options):
        n_best = {**self.defaults, **options}.get("num_hypotheses", 1)
        if isinstance(n_best, int) and n_best > 1:
            return [r.texts for r in results]
        return [r.texts[0] for r in results]

    def translate(self, texts: Sequence[str], source_lang: str | None = None, target_lang: str | None = None,
                  prefix: str | None = None, task: str | None = None, **options: Any) -> list[Any]:
        """Translations of `texts` (a list of strings), in order: one string per text, or a
        list of `num_hypotheses` strings per text when num_hypotheses > 1."""
        results = self.translate_batch(texts, source_lang=source_lang, target_lang=target_lang, prefix=prefix,
                                       task=task, **options)
        return self._texts(results, options)

    # ------------------------------------------------- in-flight batching (tformer.Engine)

    def start_engine(self, **knobs: Any) -> Engine:
        """Starts the tformer.Engine that submit / translate_async / stream run on, with
        Engine's knobs (max_rows, max_batch_tokens, kv_cache_mb, block_size, update_wait_steps); without this
        call the first of those methods starts one with the defaults. close() stops it."""
        from .engine import Engine

        with self._engine_lock:
            if self._engine is not None:
                raise RuntimeError("this Translator's engine is already started (close() stops it)")
            self._engine = Engine(self.model, **knobs)
            return self._engine

    @property
    def engine(self) -> Engine:
        """The running tformer.Engine on this translator's model (started on first use)."""
        with self._engine_lock:
            if self._engine is None:
                from .engine import Engine

                self._engine = Engine(self.model)
            return self._engine

    def close(self) -> None:
        """Stops the engine (its queued and running requests end cancelled), if started."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    def __enter__(self) -> Translator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, texts: Sequence[str], source_lang: str | None = None, target_lang: str | None = None,
               prefix: str | None = None, task: str | None = None, *, deadline: float | None = None,
               **options: Any) -> EngineFuture[list[TranslationResult]]:
        """translate_batch on the engine: a concurrent.futures.Future of the list of
        TranslationResult. Options as translate_batch's, plus the engine's `deadline=`
        (seconds); `future.cancel()` cancels the request, queued or running."""
        src_ids, options, prefix = self._request(texts, source_lang, target_lang, prefix, task, options)
        future = self.engine.submit(src_ids, deadline=deadline, **options)
        return future.then(lambda results: self._results(results, prefix))

    async def translate_async(self, texts: Sequence[str], source_lang: str | None = None,
                              target_lang: str | None = None, prefix: str | None = None, task: str | None = None, *,
                              deadline: float | None = None, **options: Any) -> list[Any]:
        """translate on the engine, for asyncio (cancelling the task cancels the request)."""
        import asyncio

        future = self.submit(texts, source_lang=source_lang, target_lang=target_lang, prefix=prefix, task=task,
                             deadline=deadline, **options)
        return self._texts(await asyncio.wrap_future(future), options)

    def stream(self, text: str, source_lang: str | None = None, target_lang: str | None = None,
               prefix: str | None = None, task: str | None = None, *, deadline: float | None = None,
               **options: Any) -> Generator[str, None, None]:
        """Iterator over the growing translation of one text: each item is the detokenized
        best hypothesis so far (greedy/sampling: token by token; beam search: the prefix all
        beams agree on, then the rest), the last one equal to translate's. Closing it early
        cancels the request."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        src_ids, options, prefix = self._request([text], source_lang, target_lang, prefix, task, options)
        return self._stream_texts(self.engine.stream(src_ids[0], deadline=deadline, **options), prefix)

    def _stream_texts(self, tokens, prefix):
        seen, last = [], None
        try:
            for token in tokens:
                seen.append(token)
                if len(seen) <= len(prefix or ()):
                    continue
                text = self.tokenizer.decode([_without_prefix(seen, prefix)])[0]
                # A piece that ends inside a multi-byte character decodes to U+FFFD: wait for the rest.
                if text != last and not text.endswith("\ufffd"):
                    last = text
                    yield text
            text = self.tokenizer.decode([_without_prefix(seen, prefix)])[0]
            if text != last:
                yield text
        finally:
            tokens.close()
