"""`tformer train` (python/tformer/train_cli.py): data errors, checkpoints (atomic, resume,
Ctrl-C), outputs; and `tformer demo` end to end for a few steps."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import tformer
from tformer.cli import main
from tformer.train_checkpoints import Checkpoints

needs_trainer = pytest.mark.skipif(not hasattr(tformer, "Trainer"), reason="tformer.Trainer not built")

FR = ["le chat dort", "j'ai acheté trois pommes", "il y a deux chiens", "elle a vu un oiseau", "nous avons un vélo",
      "le train part à cinq heures", "Marie a six ans", "la pomme coûte un euro"]
EN = ["the cat sleeps", "I bought three apples", "there are two dogs", "she saw a bird", "we have a bicycle",
      "the train leaves at five o'clock", "Marie is six years old", "the apple costs one euro"]


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    return dict(src=write(d / "train.fr", FR * 6), tgt=write(d / "train.en", EN * 6),
                vsrc=write(d / "valid.fr", FR[:4]), vtgt=write(d / "valid.en", EN[:4]), dir=d)


def train_argv(data, out, *extra):
    return ["train", "--src", data["src"], "--tgt", data["tgt"], "--valid-src", data["vsrc"], "--valid-tgt",
            data["vtgt"], "--out", str(out), "--config", "tiny", "--vocab-size", "80", "--max-tokens", "200",
            "--warmup-steps", "10", "--eval-sentences", "4", "--quiet", *extra]


# ------------------------------------------------------------------------------ errors


def error_of(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tformer train: error: ")
    return err


def test_mismatched_line_counts(data, tmp_path, capsys):
    data["tgt"] = write(data["dir"] / "short.en", EN)
    err = error_of(capsys, train_argv(data, tmp_path / "m"))
    assert "train.fr has 48 lines but" in err and "short.en has 8" in err


def test_mismatched_validation_files(data, tmp_path, capsys):
    data["vtgt"] = write(data["dir"] / "short.en", EN[:3])
    assert "valid.fr has 4 lines but" in error_of(capsys, train_argv(data, tmp_path / "m"))


def test_empty_training_file(data, tmp_path, capsys):
    data["src"] = write(data["dir"] / "empty.fr", [])
    assert "empty.fr: the file is empty" in error_of(capsys, train_argv(data, tmp_path / "m"))


def test_missing_file(data, tmp_path, capsys):
    data["tgt"] = str(data["dir"] / "missing.en")
    assert "missing.en: no such file" in error_of(capsys, train_argv(data, tmp_path / "m"))


def test_not_utf8(data, tmp_path, capsys):
    (data["dir"] / "latin1.fr").write_bytes("\n".join(FR * 6).replace("acheté", "achet\xe9").encode("latin-1"))
    data["src"] = str(data["dir"] / "latin1.fr")
    assert "latin1.fr: line 2 is not valid UTF-8" in error_of(capsys, train_argv(data, tmp_path / "m"))


def test_argument_errors(data, tmp_path, capsys):
    argv = train_argv(data, tmp_path / "m")
    i = argv.index("--valid-tgt")
    assert "--valid-src and --valid-tgt go together" in error_of(capsys, argv[:i] + argv[i + 2:])
    assert "--max-tokens must be >= 1" in error_of(capsys, train_argv(data, tmp_path / "m", "--max-tokens", "0"))
    assert "--resume: no checkpoint" in error_of(capsys, train_argv(data, tmp_path / "m", "--resume"))
    assert "--schedule cosine needs --max-steps" in error_of(capsys, train_argv(data, tmp_path / "m", "--schedule",
                                                                                   "cosine"))


# ------------------------------------------------------------------------------ checkpoints


class FailingTrainer:
    def save(self, path):
        os.makedirs(path)
        raise OSError("disk full")


def test_checkpoint_is_atomic(tmp_path):
    model = tformer.Transformer(tformer.TransformerConfig(src_vocab_size=16, tgt_vocab_size=16, d_model=8,
                                                          encoder_layers=1, decoder_layers=1, encoder_heads=2,
                                                          decoder_heads=2, encoder_ffn_dim=8, decoder_ffn_dim=8))

    class Trainer:  # writes the files a resume checks (Trainer.save's names, minimal content)
        def save(self, path):
            import numpy as np
            from safetensors.numpy import save_file

            os.makedirs(path)
            save_file({"m.x": np.zeros(2, np.float32)}, os.path.join(path, "optimizer.safetensors"))
            with open(os.path.join(path, "trainer.json"), "w") as f:
                json.dump({"step": 0}, f)

    ckpt = Checkpoints(tmp_path)
    assert ckpt.latest() is None
    first = ckpt.save(model, Trainer(), {"step": 5})
    assert ckpt.latest() == first
    with pytest.raises(OSError, match="disk full"):
        ckpt.save(model, FailingTrainer(), {"step": 9})
    assert ckpt.latest() == first and sorted(os.listdir(ckpt.root)) == ["latest", "step-00000005"]
    # a run killed in the middle of a save leaves a temporary directory and maybe a step
    # directory without its state file: neither is ever taken for a checkpoint
    os.makedirs(os.path.join(ckpt.root, ".tmp-killed", "trainer"))
    os.makedirs(os.path.join(ckpt.root, "step-00000010"))
    os.unlink(os.path.join(ckpt.root, "latest"))
    assert ckpt.latest() == first
    second = ckpt.save(model, Trainer(), {"step": 12}, keep=2)
    assert ckpt.latest() == second
    assert sorted(os.listdir(ckpt.root)) == ["latest", "step-00000005", "step-00000012"]  # debris removed
    third = ckpt.save(model, Trainer(), {"step": 15}, keep=1)
    assert sorted(os.listdir(ckpt.root)) == ["latest", "step-00000015"] and ckpt.latest() == third
    assert ckpt.save(model, FailingTrainer(), {"step": 15}) == third  # the same step is not written twice


# ------------------------------------------------------------------------------ training runs


def load_state(out):
    with open(os.path.join(Checkpoints(out).latest(), "train_state.json")) as f:
        return json.load(f)


@needs_trainer
def test_train_writes_model_tokenizer_plots_and_resumes(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_argv(data, out, "--max-steps", "6", "--eval-every", "3", "--log-every", "2",
                           "--dropout", "0")) == 0
    for name in ("config.json", "model.safetensors", "source.spm", "target.spm", "vocab.json", "loss.png"):
        assert (out / name).exists(), name
    state = load_state(out)
    assert state["step"] == 6 and state["tokens"] > 0
    valid = [h for h in state["history"] if "valid_loss" in h]
    assert [h["step"] for h in valid] == [3, 6] and all("bleu" in h and "chrf" in h for h in valid)
    model = tformer.Transformer.load(out)
    assert model.config.d_model == 128 and model.config.src_vocab_size <= 80
    translator = tformer.Translator(model, tokenizer=str(out))  # the directory's tokenizer files
    assert isinstance(translator.translate(["le chat dort"], beam_size=1, max_length=8)[0], str)
    # an existing run is not overwritten by accident
    assert main(train_argv(data, out, "--max-steps", "8")) == 2
    assert "already holds a training run" in capsys.readouterr().err
    # resumed: continues at step 6, with the state of the checkpoint
    assert main(train_argv(data, out, "--max-steps", "8", "--eval-every", "3", "--resume")) == 0
    state = load_state(out)
    assert state["step"] == 8 and [h["step"] for h in state["history"] if "valid_loss" in h] == [3, 6, 8]
    assert "resuming from" in capsys.readouterr().err


@needs_trainer
def test_resume_gives_the_same_model_as_one_run(data, tmp_path):
    import numpy as np

    common = ("--dropout", "0", "--eval-every", "4", "--eval-sentences", "0")
    assert main(train_argv(data, tmp_path / "a", "--max-steps", "8", *common)) == 0
    assert main(train_argv(data, tmp_path / "b", "--max-steps", "4", *common)) == 0
    assert main(train_argv(data, tmp_path / "b", "--max-steps", "8", "--resume", *common)) == 0
    a, b = tformer.Transformer.load(tmp_path / "a").parameters(), tformer.Transformer.load(tmp_path / "b").parameters()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


@needs_trainer
def test_ctrl_c_saves_and_exits(data, tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "tformer.cli"] + train_argv(data, out, "--eval-every", "2", "--eval-sentences", "0")
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while Checkpoints(out).latest() is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "--resume" in err and "Traceback" not in err
    step = load_state(out)["step"]
    assert step >= 2 and tformer.Transformer.load(out).config.d_model == 128
    assert main(train_argv(data, out, "--max-steps", str(step + 1), "--resume", "--eval-every", "100")) == 0
    assert load_state(out)["step"] == step + 1


@needs_trainer
def test_demo_runs_end_to_end(tmp_path, capsys):
    pytest.importorskip("num2words")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--max-steps", "3", "--train-pairs", "300", "--valid-pairs", "10",
                 "--test-pairs", "20", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["exact_match"] <= 1.0 and metrics["steps"] == 3
    assert {"bleu", "chrf", "seconds", "examples"} <= set(metrics)
    for name in ("attention.png", "loss.png", "model/model.safetensors", "data/test.fr"):
        assert (out / name).exists(), name
    printed = capsys.readouterr().out
    assert f"wrote {out}/metrics.json" in printed
    # the command it suggests translates with the demo's model, line for line
    assert f"translate with it: tformer translate {out}/model -i FILE" in printed
    test_fr = (out / "data/test.fr").read_text(encoding="utf-8").splitlines()[:5]
    src = write(tmp_path / "five.fr", test_fr)
    assert main(["translate", str(out / "model"), "-i", src, "-o", str(tmp_path / "five.en"), "--quiet",
                 "--max-length", "8"]) == 0
    assert len((tmp_path / "five.en").read_text(encoding="utf-8").splitlines()) == 5


@needs_trainer
def test_from_hf_marian_directory(data, tmp_path):
    pytest.importorskip("transformers")
    from test_translator import build_marian_model, build_marian_tokenizer, hf_tokenizer

    tok_dir = build_marian_tokenizer(tmp_path / "tok")
    hf_dir = build_marian_model(tmp_path / "hf", tok_dir, train_steps=0)
    from tformer.spm import SubwordTokenizer

    ours, ref = SubwordTokenizer.load(hf_dir), hf_tokenizer(hf_dir)
    assert ours.encode_source(FR) == ref(FR)["input_ids"]
    assert [ids + [ours.eos_id] for ids in ours.encode_target(EN)] == ref(text_target=EN)["input_ids"]
    out = tmp_path / "finetuned"
    argv = train_argv(data, out, "--max-steps", "2", "--eval-every", "2", "--from-hf", str(hf_dir))
    argv[argv.index("--config") + 1] = "base"  # ignored: the checkpoint's architecture is kept
    assert main(argv) == 0
    model = tformer.Transformer.load(out)
    assert model.config.d_model == 32 and model.config.model_type == "marian"
    assert (out / "vocab.json").read_text() == (hf_dir / "vocab.json").read_text()
