"""Tokenizers (tformer.tokenizers) and tformer.Translator against transformers.

Every tokenizer is built here, offline: sentencepiece / tokenizers models trained on the
small French-English corpus below, saved with transformers' own classes (MarianTokenizer,
BartTokenizerFast, NllbTokenizer, M2M100Tokenizer), then read back both by transformers'
AutoTokenizer (the reference) and by tformer.tokenizers. Translator runs tiny random
Marian / M2M100 checkpoints whose vocabularies are those tokenizers, against
`tokenizer.decode(hf_model.generate(...))`.
"""

import itertools
import json
import os
import shutil

import pytest
import tformer
from tformer.tokenizers import FastTokenizer, M2M100Tokenizer, MarianTokenizer, load_tokenizer

import tf_testlib as lib

# ------------------------------------------------------------------------------ corpus

FR_SENTENCES = [
    "Le chat dort sur le canapé.", "Où est la gare, s'il vous plaît ?", "Nous allons à l'école demain matin.",
    "J'aime beaucoup le café noir.", "Elle lit un livre très intéressant.", "Il fait beau aujourd'hui !",
    "Les enfants jouent dans le jardin.", "Ça coûte vingt-cinq euros.", "Je ne comprends pas ta question.",
    "Mon frère habite à Paris depuis 2019.", "Le train part à huit heures.", "Tu veux du thé ou du café ?",
    "La réunion commence dans dix minutes.", "Nous avons mangé une soupe délicieuse.",
    "Il pleut depuis ce matin.", "Le musée est fermé le lundi.", "Pouvez-vous répéter, s'il vous plaît ?",
    "Ils ont acheté une nouvelle voiture.", "Le médecin arrive bientôt.", "Quelle heure est-il ?",
]
EN_SENTENCES = [
    "The cat sleeps on the sofa.", "Where is the station, please?", "We are going to school tomorrow morning.",
    "I really like black coffee.", "She is reading a very interesting book.", "The weather is nice today!",
    "The children are playing in the garden.", "That costs twenty-five euros.", "I don't understand your question.",
    "My brother has lived in Paris since 2019.", "The train leaves at eight o'clock.", "Do you want tea or coffee?",
    "The meeting starts in ten minutes.", "We ate a delicious soup.", "It has been raining since this morning.",
    "The museum is closed on Mondays.", "Can you repeat, please?", "They bought a new car.",
    "The doctor is coming soon.", "What time is it?",
]
_FR_PARTS = (["Le chat", "La femme", "Mon voisin", "Un étudiant", "Notre professeur", "Ma sœur"],
             ["mange", "regarde", "achète", "cherche", "prépare", "aime"],
             ["une pomme rouge.", "le journal du matin.", "trois gâteaux au chocolat !", "la maison bleue ?",
              "un cadeau pour Noël.", "des légumes frais."])
_EN_PARTS = (["The cat", "The woman", "My neighbour", "A student", "Our teacher", "My sister"],
             ["eats", "watches", "buys", "looks for", "prepares", "loves"],
             ["a red apple.", "the morning paper.", "three chocolate cakes!", "the blue house?",
              "a gift for Christmas.", "fresh vegetables."])
FR = FR_SENTENCES + [" ".join(p) for p in itertools.product(*_FR_PARTS)]   # 236 lines
EN = EN_SENTENCES + [" ".join(p) for p in itertools.product(*_EN_PARTS)]   # 236 lines

# Inputs that exercise the edges: spaces, characters the models never saw, special tokens
# and language codes written in the text, tabs and newlines.
TRICKY = [
    "Le chat dort sur le canapé.", "  Où est   la gare ?  ", "Ça coûte 你好 42 € 🙂", "a</s>b <pad> c <unk>",
    ">>fra<< Bonjour", "x", "tab\tnew\nline", "MAJUSCULES et minuscules", "eng_Latn __fr__ <s> <mask>",
    "The cat sleeps on the sofa.", "Where is the station, please?",
]
TEXTS = ["Le chat dort sur le canapé.", "Où est la gare ?", "Mon voisin achète une pomme rouge.",
         "Il pleut.", "Nous avons mangé une soupe délicieuse depuis ce matin."]


def _train_spm(lines, prefix, vocab_size, model_type="unigram", **kw):
    import sentencepiece as spm

    with open(prefix + ".txt", "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    spm.SentencePieceTrainer.train(input=prefix + ".txt", model_prefix=prefix, vocab_size=vocab_size,
                                   model_type=model_type, character_coverage=1.0, minloglevel=2, **kw)
    return prefix + ".model"


def _spm_pieces(model):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=model)
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())
            if not (sp.is_control(i) or sp.is_unknown(i))]


def build_marian_tokenizer(directory, languages=(), separate_vocabs=False):
    """opus-mt layout: source.spm (French), target.spm (English), vocab.json = </s>, <unk>,
    language codes, the pieces of both models, <pad> last (as opus-mt's pad id is the
    last id)."""
    from transformers import MarianTokenizer as HFMarian

    work = directory.parent / (directory.name + "_work")
    work.mkdir(parents=True, exist_ok=True)
    src = _train_spm(FR, str(work / "src"), 100, unk_id=2, eos_id=1, bos_id=-1, pad_id=0)
    tgt = _train_spm(EN, str(work / "tgt"), 100, unk_id=2, eos_id=1, bos_id=-1, pad_id=0)

    def vocab_of(models):
        vocab = {"</s>": 0, "<unk>": 1}
        for code in languages:
            vocab[f">>{code}<<"] = len(vocab)
        for model in models:
            for piece in _spm_pieces(model):
                vocab.setdefault(piece, len(vocab))
        vocab["<pad>"] = len(vocab)
        return vocab

    kwargs = {}
    if separate_vocabs:
        json.dump(vocab_of([src]), open(work / "vocab.json", "w"))
        json.dump(vocab_of([tgt]), open(work / "target_vocab.json", "w"))
        kwargs = dict(target_vocab_file=str(work / "target_vocab.json"), separate_vocabs=True)
    else:
        json.dump(vocab_of([src, tgt]), open(work / "vocab.json", "w"))
    with lib.quiet():
        tok = HFMarian(source_spm=src, target_spm=tgt, vocab=str(work / "vocab.json"), source_lang="fr",
                       target_lang="en", **kwargs)
        tok.save_pretrained(str(directory))
    return directory


def build_bart_tokenizer(directory):
    """Byte-level BPE trained with `tokenizers`, saved through BartTokenizerFast
    (tokenizer.json with the <s> … </s> post-processor)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import BartTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(FR + EN, trainer)
    work = directory.parent / (directory.name + "_work")
    work.mkdir(parents=True, exist_ok=True)
    bpe.model.save(str(work))
    with lib.quiet():
        tok = BartTokenizerFast(vocab=str(work / "vocab.json"), merges=str(work / "merges.txt"))
        tok.save_pretrained(str(directory))
    return directory


NLLB_LANGS = ["eng_Latn", "fra_Latn", "deu_Latn"]


def build_nllb_tokenizer(directory, legacy=False):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import NllbTokenizer

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    bpe.train_from_iterator(FR + EN, trainers.BpeTrainer(vocab_size=200, show_progress=False,
                                                         special_tokens=["<s>", "<pad>", "</s>", "<unk>"]))
    spec = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in spec["merges"]]
    with lib.quiet():
        tok = NllbTokenizer(vocab=spec["vocab"], merges=merges, additional_special_tokens=NLLB_LANGS,
                            src_lang="fra_Latn", legacy_behaviour=legacy)
        tok.save_pretrained(str(directory))
    return directory


M2M_LANGS = "af am ar ast az ba be bg bn br bs ca ceb cs cy da de el en es et fa ff fi fr fy ga gd gl gu ha he hi " \
            "hr ht hu hy id ig ilo is it ja jv ka kk km kn ko lb lg ln lo lt lv mg mk ml mn mr ms my ne nl no ns " \
            "oc or pa pl ps pt ro ru sd si sk sl so sq sr ss su sv sw ta th tl tn tr uk ur uz vi wo xh yi yo zh " \
            "zu".split()


def build_m2m100_tokenizer(directory, hub_style=True):
    """vocab.json + sentencepiece.bpe.model through M2M100Tokenizer. hub_style: the
    __xx__ codes listed as additional_special_tokens, as facebook/m2m100_418M's files do
    (transformers 5 itself does not save them)."""
    from transformers import M2M100Tokenizer as HFM2M

    work = directory.parent / (directory.name + "_work")
    work.mkdir(parents=True, exist_ok=True)
    model = _train_spm(FR + EN, str(work / "m2m"), 160, model_type="bpe")
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for piece in _spm_pieces(model):
        vocab.setdefault(piece, len(vocab))
    json.dump(vocab, open(work / "vocab.json", "w"))
    with lib.quiet():
        HFM2M(vocab_file=str(work / "vocab.json"), spm_file=model, src_lang="fr").save_pretrained(str(directory))
    if hub_style:
        cfg_path = directory / "tokenizer_config.json"
        cfg = json.load(open(cfg_path))
        for key in ("added_tokens_decoder", "extra_special_tokens", "backend"):
            cfg.pop(key, None)
        cfg["additional_special_tokens"] = [f"__{c}__" for c in M2M_LANGS]
        json.dump(cfg, open(cfg_path, "w"))
    return directory


def hf_tokenizer(directory, **kwargs):
    from transformers import AutoTokenizer

    with lib.quiet():
        return AutoTokenizer.from_pretrained(str(directory), **kwargs)


@pytest.fixture(scope="module")
def tok_dirs(tmp_path_factory):
    """name -> directory, each built on first use."""
    builders = {
        "marian": build_marian_tokenizer,
        "marian_multi": lambda d: build_marian_tokenizer(d, languages=("fra", "deu", "spa")),
        "marian_separate": lambda d: build_marian_tokenizer(d, separate_vocabs=True),
        "bart": build_bart_tokenizer,
        "nllb": build_nllb_tokenizer,
        "nllb_legacy": lambda d: build_nllb_tokenizer(d, legacy=True),
        "m2m100": build_m2m100_tokenizer,
        "m2m100_saved": lambda d: build_m2m100_tokenizer(d, hub_style=False),
    }
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = builders[name](tmp_path_factory.mktemp("tok") / name)
        return cache[name]

    return get


# ------------------------------------------------------------------------ tokenizers


def _check_against_hf(ours, ref, texts, **enc):
    ref_ids = [ref(t)["input_ids"] for t in texts]
    assert ours.encode(texts, **enc) == ref_ids
    assert ours.decode(ref_ids) == [ref.decode(ids, skip_special_tokens=True) for ids in ref_ids]


@pytest.mark.parametrize("name", ["marian", "marian_multi", "marian_separate"])
def test_marian_ids_and_decode_match_transformers(tok_dirs, name):
    ours = load_tokenizer(tok_dirs(name))
    assert isinstance(ours, MarianTokenizer)
    ref = hf_tokenizer(tok_dirs(name))
    assert type(ref).__name__ == "MarianTokenizer"
    _check_against_hf(ours, ref, TRICKY + FR[::25])
    assert ours.encode(["Le chat"])[0][-1] == ref.eos_token_id == 0


def test_marian_decode_of_arbitrary_ids_matches_transformers(tok_dirs):
    """Ids a random model may generate: every id once, specials mixed in, repeated pieces."""
    for name in ("marian", "marian_separate"):
        ref = hf_tokenizer(tok_dirs(name))
        ours = load_tokenizer(tok_dirs(name))
        n = len(ref)
        for ids in [list(range(n)), list(range(n - 1, -1, -7)), [5, 5, 5, 1, 0, n - 1, 9], [1, 1], [0], []]:
            assert ours.decode([ids]) == [ref.decode(ids, skip_special_tokens=True)], ids


def test_marian_round_trip(tok_dirs):
    """Text made of pieces the model knows comes back unchanged (sentencepiece
    normalisation aside: runs of spaces collapse)."""
    ours = load_tokenizer(tok_dirs("marian"))
    texts = FR[:30]
    assert ours.decode(ours.encode(texts)) == texts
    assert ours.decode(ours.encode(["  Le   chat  dort. "])) == ["Le chat dort."]


def test_marian_target_language_code(tok_dirs):
    ours = load_tokenizer(tok_dirs("marian_multi"))
    ref = hf_tokenizer(tok_dirs("marian_multi"))
    assert sorted(ours.languages) == ["deu", "fra", "spa"]
    for lang in ("fra", ">>deu<<"):
        code = lang if lang.startswith(">>") else f">>{lang}<<"
        assert ours.encode(TEXTS, target_lang=lang) == [ref(f"{code} {t}")["input_ids"] for t in TEXTS]
    with pytest.raises(ValueError, match="target_lang='ita' is not one of this model's codes: deu, fra, spa"):
        ours.encode(TEXTS, target_lang="ita")
    with pytest.raises(ValueError, match="translates into one language"):
        load_tokenizer(tok_dirs("marian")).encode(TEXTS, target_lang="fra")
    with pytest.raises(ValueError, match="source_lang='fr': this marian tokenizer has no source-language tokens"):
        ours.encode(TEXTS, source_lang="fr")


def test_bart_ids_and_decode_match_transformers(tok_dirs):
    ours = load_tokenizer(tok_dirs("bart"))
    assert isinstance(ours, FastTokenizer) and ours.family == "generic"
    ref = hf_tokenizer(tok_dirs("bart"))
    _check_against_hf(ours, ref, TRICKY + EN[::20])
    ids = ours.encode(["The cat sleeps."])[0]
    assert ids[0] == ref.bos_token_id and ids[-1] == ref.eos_token_id  # <s> … </s>
    assert ours.decode(ours.encode(EN[:20])) == EN[:20]  # byte-level BPE is lossless
    with pytest.raises(ValueError, match="no target-language tokens"):
        ours.target_prefix("fr")


@pytest.mark.parametrize("name", ["nllb", "nllb_legacy"])
def test_nllb_source_language_layout_matches_transformers(tok_dirs, name):
    ours = load_tokenizer(tok_dirs(name))
    assert ours.family == name and sorted(ours.languages) == sorted(NLLB_LANGS)
    for lang in (None, "eng_Latn", "deu_Latn"):
        ref = hf_tokenizer(tok_dirs(name), **({"src_lang": lang} if lang else {}))
        _check_against_hf(ours, ref, TRICKY, source_lang=lang)
    ref = hf_tokenizer(tok_dirs(name))
    assert ours.target_prefix("deu_Latn") == [ref.convert_tokens_to_ids("deu_Latn")]
    with pytest.raises(ValueError, match="target_lang='xx_Yyyy' is not one of this model's languages"):
        ours.target_prefix("xx_Yyyy")


@pytest.mark.parametrize("name", ["m2m100", "m2m100_saved"])
def test_m2m100_source_language_tokens_match_transformers(tok_dirs, name):
    ours = load_tokenizer(tok_dirs(name))
    assert isinstance(ours, M2M100Tokenizer) and len(ours.languages) == 100
    for lang in (None, "en", "de"):
        ref = hf_tokenizer(tok_dirs(name), **({"src_lang": lang} if lang else {}))
        _check_against_hf(ours, ref, TRICKY, source_lang=lang)
        ids = ours.encode(["Le chat"], source_lang=lang)[0]
        assert ids[0] == ref.get_lang_id(lang or "fr") and ids[-1] == ref.eos_token_id
    ref = hf_tokenizer(tok_dirs(name))
    assert ours.target_prefix("de") == ours.target_prefix("__de__") == [ref.get_lang_id("de")]
    with pytest.raises(ValueError, match="source_lang='xx' is not one of this model's languages"):
        ours.encode(["a"], source_lang="xx")
    with pytest.raises(TypeError, match="target_lang must be a string"):
        ours.target_prefix(3)


def test_tokenizer_errors(tmp_path, tok_dirs):
    with pytest.raises(FileNotFoundError, match="tokenizer directory not found"):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bart"}))
    with pytest.raises(FileNotFoundError, match="no tokenizer found: expected tokenizer.json"):
        load_tokenizer(tmp_path)
    partial = tmp_path / "partial"
    shutil.copytree(tok_dirs("marian"), partial)
    os.remove(partial / "target.spm")
    with pytest.raises(FileNotFoundError, match="Marian tokenizer files missing: target.spm"):
        load_tokenizer(partial)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json: cannot be read"):
        load_tokenizer(broken)


# ------------------------------------------------------------------------ Translator


def train_briefly(model, tokenizer_dir, steps, seed=0, **tokenizer_kwargs):
    """A few Adam steps on the French-English corpus (parallel line by line), so that the
    tiny model writes varied, word-like output instead of a random model's one repeated
    token: the comparisons then cover real detokenization and input-dependent search."""
    import torch

    tok = hf_tokenizer(tokenizer_dir, **tokenizer_kwargs)
    batch = tok(FR, text_target=EN, return_tensors="pt", padding=True)
    labels = batch["labels"].masked_fill(batch["labels"] == tok.pad_token_id, -100)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a d_model-32 model trains faster on one thread
    try:
        model.train()
        for _ in range(steps):
            idx = torch.randint(0, len(FR), (32,), generator=gen)
            loss = model(input_ids=batch["input_ids"][idx], attention_mask=batch["attention_mask"][idx],
                         labels=labels[idx]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _save_with_tokenizer(model, directory, tokenizer_dir, generation=None):
    lib.save_hf_model(model, directory)
    for name in os.listdir(tokenizer_dir):
        shutil.copy(os.path.join(tokenizer_dir, name), directory)
    if generation is not None:
        gen_path = os.path.join(directory, "generation_config.json")
        json.dump({**json.load(open(gen_path)), **generation}, open(gen_path, "w"))
    return directory


def build_marian_model(directory, tokenizer_dir, seed=0, generation=None, max_positions=64, train_steps=120):
    """A tiny MarianMT checkpoint whose vocabulary is the tokenizer's, briefly trained,
    with the tokenizer files copied in (an opus-mt directory in miniature)."""
    import torch
    from transformers import MarianConfig, MarianMTModel

    vocab = json.load(open(os.path.join(tokenizer_dir, "vocab.json")))
    pad = vocab["<pad>"]
    torch.manual_seed(seed)
    with lib.quiet():
        cfg = MarianConfig(vocab_size=len(vocab), d_model=32, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, max_position_embeddings=max_positions, activation_function="swish",
                           pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad, forced_eos_token_id=0,
                           dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
        model = MarianMTModel(cfg)
    train_briefly(model, tokenizer_dir, train_steps, seed=seed)
    return _save_with_tokenizer(model, directory, tokenizer_dir, generation)


def build_marian_dir(tmp_path_factory, name, **model_kwargs):
    """A tiny opus-mt-like directory (tokenizer + model, build_marian_model's keywords) in fresh
    temporary directories named after `name`: one line for a test module's fixture."""
    tok = build_marian_tokenizer(tmp_path_factory.mktemp(f"{name}_tok") / "marian")
    return build_marian_model(tmp_path_factory.mktemp(f"{name}_model"), tok, **model_kwargs)


def build_m2m100_model(directory, tokenizer_dir, seed=0, train_steps=120, langs=("fr", "en")):
    """A tiny M2M100 checkpoint, briefly trained to write English after the English token.
    With an M2M100 tokenizer the vocabulary is vocab.json + the 100 language tokens + 8
    made-up words (as facebook/m2m100 counts them); with an NLLB one, the tokenizer's."""
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration

    if os.path.isfile(os.path.join(tokenizer_dir, "vocab.json")):
        vocab_size = len(json.load(open(os.path.join(tokenizer_dir, "vocab.json")))) + len(M2M_LANGS) + 8
    else:
        vocab_size = len(hf_tokenizer(tokenizer_dir))
    torch.manual_seed(seed)
    with lib.quiet():
        cfg = M2M100Config(vocab_size=vocab_size, d_model=32, encoder_layers=2,
                           decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                           encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                           pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
                           dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
        model = M2M100ForConditionalGeneration(cfg)
    train_briefly(model, tokenizer_dir, train_steps, seed=seed, src_lang=langs[0], tgt_lang=langs[1])
    return _save_with_tokenizer(model, directory, tokenizer_dir)


def hf_model(directory):
    from transformers import AutoModelForSeq2SeqLM

    with lib.quiet():
        return AutoModelForSeq2SeqLM.from_pretrained(str(directory), attn_implementation="eager").double().eval()


def hf_translate(directory, texts, n_best=1, tokenizer_kwargs=None, **generate_kwargs):
    """The reference: transformers' tokenizer + generate + decode, exactly as a user writes it."""
    import torch

    tok = hf_tokenizer(directory, **(tokenizer_kwargs or {}))
    model = hf_model(directory)
    with torch.no_grad(), lib.quiet():
        out = model.generate(**tok(texts, return_tensors="pt", padding=True), num_return_sequences=n_best,
                             **generate_kwargs)
    decoded = [tok.decode(seq, skip_special_tokens=True) for seq in out]
    if n_best == 1:
        return decoded
    return [decoded[i * n_best:(i + 1) * n_best] for i in range(len(texts))]


@pytest.fixture(scope="module")
def marian_dir(tok_dirs, tmp_path_factory):
    return build_marian_model(tmp_path_factory.mktemp("tiny_marian"), tok_dirs("marian"))


@pytest.fixture(scope="module")
def translator(marian_dir):
    return tformer.Translator(str(marian_dir))


@pytest.mark.parametrize("beam_size,max_length", [(1, 12), (3, 12), (4, 6)])
def test_translate_matches_transformers(marian_dir, translator, beam_size, max_length):
    expected = hf_translate(marian_dir, TEXTS, num_beams=beam_size, max_new_tokens=max_length)
    assert translator.translate(TEXTS, beam_size=beam_size, max_length=max_length) == expected


def test_translate_n_best_matches_transformers(marian_dir, translator):
    expected = hf_translate(marian_dir, TEXTS, n_best=2, num_beams=3, max_new_tokens=10)
    got = translator.translate(TEXTS, beam_size=3, num_hypotheses=2, max_length=10)
    assert got == expected and all(len(h) == 2 for h in got)


def test_translate_batch_results(translator):
    results = translator.translate_batch(TEXTS[:2], beam_size=2, max_length=8, return_scores=True)
    assert len(results) == 2
    for r in results:
        assert len(r.texts) == len(r.tokens) == len(r.scores) == 1
        assert r.texts == translator.tokenizer.decode(r.tokens)
    assert [r.texts[0] for r in results] == translator.translate(TEXTS[:2], beam_size=2, max_length=8)


def test_generation_config_defaults_like_transformers(tok_dirs, tmp_path):
    """No options: the directory's generation_config.json decides, for transformers and
    for Translator alike (num_beams, max_length counting the start token, length_penalty,
    no_repeat_ngram_size)."""
    gen = dict(num_beams=3, max_length=9, length_penalty=0.6, no_repeat_ngram_size=2)
    directory = build_marian_model(tmp_path / "m", tok_dirs("marian"), seed=3, generation=gen)
    translator = tformer.Translator(str(directory))
    assert translator.defaults == {"beam_size": 3, "max_length": 8, "length_penalty": 0.6,
                                   "no_repeat_ngram_size": 2}
    assert translator.translate(TEXTS) == hf_translate(directory, TEXTS)
    # options given to the constructor, then to the call, win over the directory's
    assert tformer.Translator(str(directory), beam_size=1).defaults["beam_size"] == 1
    assert translator.translate(TEXTS, beam_size=1, max_length=5) == \
        hf_translate(directory, TEXTS, num_beams=1, max_new_tokens=5)


def test_translator_from_a_model_needs_a_tokenizer(marian_dir, translator):
    model = tformer.from_huggingface(str(marian_dir))
    with pytest.raises(ValueError, match="needs tokenizer="):
        tformer.Translator(model)
    other = tformer.Translator(model, tokenizer=str(marian_dir))
    assert other.translate(TEXTS, beam_size=2, max_length=7) == translator.translate(TEXTS, beam_size=2,
                                                                                      max_length=7)
    same_tok = tformer.Translator(model, tokenizer=translator.tokenizer)
    assert same_tok.tokenizer is translator.tokenizer
    with pytest.raises(TypeError, match="model_or_path must be a tformer.Transformer or the path"):
        tformer.Translator(42)


def test_translate_bad_input(translator):
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        translator.translate(["Le chat.", ""])
    with pytest.raises(ValueError, match=r"texts\[0\] is empty"):
        translator.translate(["   "])
    with pytest.raises(ValueError, match="texts is empty"):
        translator.translate([])
    with pytest.raises(TypeError, match=r"texts\[1\] must be a string, got int"):
        translator.translate(["Le chat.", 3])
    with pytest.raises(TypeError, match="got a str"):
        translator.translate("Le chat.")
    with pytest.raises(TypeError, match="texts must be a list of strings, got NoneType"):
        translator.translate(None)
    with pytest.raises(ValueError, match="beam_size"):
        translator.translate(["Le chat."], beam_size=0)
    with pytest.raises(ValueError, match="translates into one language"):
        translator.translate(["Le chat."], target_lang="de")


@pytest.mark.parametrize("name,source,targets", [("m2m100", "fr", ("de", "en")),
                                                  ("nllb", "fra_Latn", ("deu_Latn", "eng_Latn"))])
def test_target_lang_matches_forced_bos(tok_dirs, tmp_path, name, source, targets):
    """M2M100 / NLLB: target_lang becomes the forced first token (transformers'
    forced_bos_token_id), source_lang the source-language token."""
    directory = build_m2m100_model(tmp_path / name, tok_dirs(name), seed=5, langs=(source, targets[1]))
    translator = tformer.Translator(str(directory), source_lang=source)
    ref_tok = hf_tokenizer(directory, src_lang=source)
    for target in targets:
        lang_id = ref_tok.convert_tokens_to_ids(f"__{target}__" if name == "m2m100" else target)
        expected = hf_translate(directory, TEXTS, tokenizer_kwargs={"src_lang": source}, num_beams=2,
                                max_new_tokens=10, forced_bos_token_id=lang_id)
        results = translator.translate_batch(TEXTS, target_lang=target, beam_size=2, max_length=10)
        assert [r.texts[0] for r in results] == expected
        # the language token is generated (forced) but is not part of the text
        assert all(r.tokens[0][0] == lang_id for r in results)
    with pytest.raises(ValueError, match="target_lang='xx' is not one of this model's languages"):
        translator.translate(TEXTS, target_lang="xx")
