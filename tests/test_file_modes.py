"""Files and directories tformer writes honour the umask (issue 17): tempfile's 0600 files
and 0700 directories must not survive the atomic rename, so that a model trained by one
account can be served by another as the user's umask allows."""
import os
import stat

import pytest
import tformer
from tformer.atomic_files import atomic_write, atomic_write_bytes, current_umask
from tformer.train_checkpoints import Checkpoints, export_model

from test_train_cli import data, train_argv  # noqa: F401  (data is a fixture)

CFG = dict(src_vocab_size=24, tgt_vocab_size=24, d_model=16, encoder_layers=1, decoder_layers=1, encoder_heads=2,
           decoder_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, max_positions=16)
UMASKS = [0o022, 0o027]


@pytest.fixture(params=UMASKS, ids=lambda m: f"umask{m:03o}")
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def assert_tree_modes(root, umask):
    """Every file under root is 0666 & ~umask, every directory (root included) 0777 & ~umask."""
    seen = 0
    for directory, dirs, files in os.walk(root):
        assert mode(directory) == 0o777 & ~umask, f"{directory}: {oct(mode(directory))}"
        for name in files:
            path = os.path.join(directory, name)
            assert mode(path) == 0o666 & ~umask, f"{path}: {oct(mode(path))} under umask {umask:03o}"
            seen += 1
    assert seen, f"nothing written under {root}"


def test_current_umask_reads_without_changing(umask):
    assert current_umask() == umask
    assert current_umask() == umask  # reading it twice: unchanged


def test_atomic_write_gives_the_umask_mode(tmp_path, umask):
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert mode(tmp_path / "a.bin") == 0o666 & ~umask

    def replace_file(tmp):  # a writer that deletes and recreates the temporary file (as some libraries do)
        os.unlink(tmp)
        with open(tmp, "w") as f:
            f.write("y")
        os.chmod(tmp, 0o600)

    atomic_write(tmp_path / "b.txt", replace_file)
    assert mode(tmp_path / "b.txt") == 0o666 & ~umask
    assert (tmp_path / "b.txt").read_text() == "y"


def test_model_save_and_export_give_the_umask_modes(tmp_path, umask):
    model = tformer.Transformer(tformer.TransformerConfig(**CFG), seed=0)
    model.save(tmp_path / "m")
    assert_tree_modes(tmp_path / "m", umask)
    os.makedirs(tmp_path / "export")
    export_model(model, tmp_path / "export", dtype="int8")
    assert sorted(os.listdir(tmp_path / "export")) == ["config.json", "model.safetensors"]
    assert_tree_modes(tmp_path / "export", umask)
    assert tformer.Transformer.load(tmp_path / "export").dtype == "int8"


def test_checkpoint_gives_the_umask_modes(tmp_path, umask):
    model = tformer.Transformer(tformer.TransformerConfig(**CFG), seed=0)
    trainer = tformer.Trainer(model, lr=1e-3, warmup_steps=1)
    trainer.step([[5, 6, 7, 1], [8, 9, 1]], [[10, 11], [12, 13, 14]])
    path = Checkpoints(tmp_path).save(model, trainer, {"step": 1})
    assert_tree_modes(tmp_path / "checkpoints", umask)  # step dir (was a mkdtemp), trainer/, latest
    assert os.path.isdir(os.path.join(path, "trainer"))


def test_tformer_train_output_gives_the_umask_modes(data, tmp_path):  # noqa: F811 (data is a fixture)
    """The whole run directory of `tformer train` (model, tokenizer, plots, checkpoints) is
    readable by the group under umask 027, and by all under 022."""
    from tformer.cli import main

    for mask in UMASKS:
        old = os.umask(mask)
        try:
            out = tmp_path / f"run{mask:03o}"
            assert main(train_argv(data, out, "--max-steps", "2", "--eval-every", "2")) == 0
        finally:
            os.umask(old)
        assert os.path.exists(out / "model.safetensors") and os.path.isdir(out / "checkpoints")
        assert_tree_modes(out, mask)
