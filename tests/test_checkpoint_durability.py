"""Checkpoints that survive a power loss and a resume that trusts only whole ones
(python/tformer/atomic_files.py, checkpoint_check.py, train_checkpoints.py), checkpoint
pointers that cannot reach outside checkpoints/, and the rendezvous store of data-parallel
training listening on MASTER_ADDR only (distributed.py)."""
import errno
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tformer
from tformer import atomic_files, distributed
from tformer.cli import main
from tformer.train_checkpoints import BrokenCheckpointError, Checkpoints, CheckpointWarning

from test_train_cli import data, train_argv  # noqa: F401  (data is a fixture)

CFG = dict(src_vocab_size=24, tgt_vocab_size=24, d_model=16, encoder_layers=1, decoder_layers=1, encoder_heads=2,
           decoder_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, max_positions=16)
BATCH = ([[5, 6, 7, 1], [8, 9, 1]], [[10, 11], [12, 13, 14]])
STEPS = [([[5 + i, 6, 7, 1], [8, 9 + i, 1]], [[10, 11 + i], [12 + i, 13, 14]]) for i in range(6)]
TRAINER = dict(lr=1e-3, warmup_steps=1, dropout=0.1, seed=3)


# ------------------------------------------------------------------------------ fsync


@pytest.fixture
def disk_log(monkeypatch):
    """Records, in order, each os.fsync (the inode it flushed, and whether it is a directory)
    and each os.replace (its destination), as the writers call them."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync", (st.st_dev, st.st_ino), stat.S_ISDIR(st.st_mode)))
        return real_fsync(fd)

    def replace(src, dst, **kw):
        events.append(("replace", os.path.abspath(dst), None))
        return real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def inode(path):
    st = os.stat(path)
    return st.st_dev, st.st_ino


def assert_durable(events, path):
    """`path` was fsynced before it was renamed into place, and its directory after."""
    path = os.path.abspath(path)
    renames = [i for i, e in enumerate(events) if e[:2] == ("replace", path)]
    assert renames, f"{path} was not renamed into place"
    last = renames[-1]
    if os.path.isfile(path):  # a renamed file keeps its inode: the temporary file was flushed
        assert any(e[:2] == ("fsync", inode(path)) for e in events[:last]), f"{path} not fsynced before its rename"
    assert any(e[:2] == ("fsync", inode(os.path.dirname(path))) for e in events[last:]), \
        f"the directory of {path} not fsynced after the rename"


def test_model_save_fsyncs_files_and_directory(tmp_path, disk_log):
    tformer.Transformer(tformer.TransformerConfig(**CFG), seed=0).save(tmp_path / "m")
    for name in ("model.safetensors", "config.json"):
        assert_durable(disk_log, tmp_path / "m" / name)


def test_tokenizer_and_plot_writers_fsync(tmp_path, disk_log):
    from tformer.plots import plot_loss
    from tformer.spm import atomic_write_bytes

    atomic_write_bytes(tmp_path / "vocab.json", b"{}")
    assert_durable(disk_log, tmp_path / "vocab.json")
    plot_loss([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}], tmp_path / "loss.png")
    assert_durable(disk_log, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_checkpoint_save_is_durable(tmp_path, disk_log):
    model = tformer.Transformer(tformer.TransformerConfig(**CFG), seed=0)
    trainer = tformer.Trainer(model, lr=1e-3, warmup_steps=1)
    trainer.step(*BATCH)
    path = Checkpoints(tmp_path).save(model, trainer, {"step": 1})
    assert_durable(disk_log, path)  # the step directory's rename, then checkpoints/ itself
    # before that rename: every file and directory inside was on the disk (a renamed
    # directory keeps its inode, so the temporary directory's fsync shows as the final one's)
    rename = [e[:2] for e in disk_log].index(("replace", os.path.abspath(path)))
    flushed = {e[1] for e in disk_log[:rename] if e[0] == "fsync"}
    for name in ("config.json", "model.safetensors", "train_state.json", "trainer/trainer.json",
                 "trainer/optimizer.safetensors", "trainer", "."):
        assert inode(os.path.join(path, name)) in flushed, name
    assert_durable(disk_log, tmp_path / "checkpoints" / "latest")


def test_export_model_is_durable(tmp_path, disk_log):
    from tformer.train_checkpoints import export_model

    export_model(tformer.Transformer(tformer.TransformerConfig(**CFG), seed=0), str(tmp_path))
    for name in ("model.safetensors", "config.json"):
        assert_durable(disk_log, tmp_path / name)


def test_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def fail(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_files.atomic_write(target, fail)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]


@pytest.mark.parametrize("code,fails", [(errno.EINVAL, False), (errno.EIO, True)])
def test_directory_fsync_errors(tmp_path, monkeypatch, code, fails):
    """A filesystem that cannot flush directories (EINVAL) still saves; a disk error does not pass."""
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(code, os.strerror(code))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    if fails:
        with pytest.raises(OSError, match=os.strerror(code)):
            atomic_files.atomic_write_bytes(tmp_path / "f", b"new")
    else:
        atomic_files.atomic_write_bytes(tmp_path / "f", b"new")
        assert (tmp_path / "f").read_bytes() == b"new"


# ------------------------------------------------------------------------------ verified resume


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """checkpoints/step-00000002 and step-00000004 of a tiny real training run of 6 steps,
    and its weights at the end."""
    out = tmp_path_factory.mktemp("run")
    model = tformer.Transformer(tformer.TransformerConfig(**CFG), seed=0)
    trainer = tformer.Trainer(model, **TRAINER)
    ckpt = Checkpoints(out)
    for step, batch in enumerate(STEPS, 1):
        trainer.step(*batch)
        if step in (2, 4):
            ckpt.save(model, trainer, {"step": step}, keep=2)
    return out, model.parameters()


@pytest.fixture
def run(two_checkpoints, tmp_path):
    shutil.copytree(two_checkpoints[0], tmp_path / "run")
    return tmp_path / "run"


def zero_length(path):
    open(path, "wb").close()


def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 7)


def corrupt_header(path):
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(b"\x00\x00")  # the JSON header's first bytes


def wrong_shape(path):
    """A header that still parses, but a tensor's shape no longer matches its byte count."""
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = f.read(n)
        i = header.index(b'"shape":[') + len(b'"shape":[')
        f.seek(8 + i)
        f.write(b"9" if header[i:i + 1] != b"9" else b"8")


DAMAGE = {
    "empty model": ("model.safetensors", zero_length, r"model.safetensors: not a safetensors file \(truncated: 0 bytes\)"),
    "truncated optimizer": ("trainer/optimizer.safetensors", truncate,
                            "trainer/optimizer.safetensors: truncated safetensors file: the header describes .* bytes"),
    "corrupt header": ("model.safetensors", corrupt_header, "model.safetensors: corrupt safetensors header"),
    "wrong shape": ("model.safetensors", wrong_shape, "model.safetensors: corrupt safetensors header: tensor .* needs .* bytes"),
    "empty state": ("train_state.json", zero_length, r"train_state.json: empty file \(0 bytes\)"),
    "missing trainer": ("trainer/trainer.json", os.unlink, "trainer/trainer.json: missing"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_latest_skips_a_damaged_checkpoint(run, damage):
    rel, spoil, message = DAMAGE[damage]
    spoil(run / "checkpoints" / "step-00000004" / rel)
    with pytest.warns(CheckpointWarning, match=f"step-00000004: ({message}).*resuming from .*step-00000002"):
        assert Checkpoints(run).latest() == str(run / "checkpoints" / "step-00000002")


def test_no_whole_checkpoint_is_a_clear_error(run):
    zero_length(run / "checkpoints" / "step-00000004" / "model.safetensors")
    corrupt_header(run / "checkpoints" / "step-00000002" / "trainer" / "optimizer.safetensors")
    with pytest.raises(BrokenCheckpointError, match="no whole checkpoint to resume from: .*step-00000004: "
                                                    "model.safetensors: not a safetensors file .*step-00000002: "
                                                    "trainer/optimizer.safetensors: corrupt safetensors header"):
        Checkpoints(run).latest()


def test_save_replaces_a_damaged_checkpoint_of_the_same_step(run):
    """Resumed from step 2, the run saves step 4 again: the damaged step-00000004 is rewritten,
    not kept (the pointer would name it) and pruning keeps the whole ones."""
    zero_length(run / "checkpoints" / "step-00000004" / "model.safetensors")
    with pytest.warns(CheckpointWarning):
        path = Checkpoints(run).latest()
    model = tformer.Transformer.load(path)
    trainer = tformer.Trainer.load(os.path.join(path, "trainer"), model)
    Checkpoints(run).save(model, trainer, {"step": 4}, keep=2)
    assert Checkpoints(run).latest() == str(run / "checkpoints" / "step-00000004")  # no warning: whole again
    assert sorted(os.listdir(run / "checkpoints")) == ["latest", "step-00000002", "step-00000004"]


def test_resume_from_the_fallback_is_exact(run, two_checkpoints):
    """The newest checkpoint lost its weights (a power loss): training continues from the
    previous one and ends bit for bit where the uninterrupted run ended."""
    zero_length(run / "checkpoints" / "step-00000004" / "model.safetensors")
    with pytest.warns(CheckpointWarning):
        path = Checkpoints(run).latest()
    model = tformer.Transformer.load(path)
    trainer = tformer.Trainer.load(os.path.join(path, "trainer"), model)
    assert trainer.step_count == 2
    for batch in STEPS[2:]:
        trainer.step(*batch)
    final = two_checkpoints[1]
    for name, value in model.parameters().items():
        np.testing.assert_array_equal(value, final[name], err_msg=name)


def test_cli_resume_warns_and_names_broken_checkpoints(data, tmp_path, capsys):  # noqa: F811
    """tformer train --resume over a zero-length model.safetensors in the newest checkpoint
    warns and resumes from the previous one; with every checkpoint broken it names them and
    stops with status 2."""
    out = tmp_path / "b"
    common = ("--dropout", "0", "--eval-every", "1", "--eval-sentences", "0", "--max-steps", "2")
    assert main(train_argv(data, out, *common)) == 0
    zero_length(out / "checkpoints" / "step-00000002" / "model.safetensors")
    capsys.readouterr()
    with pytest.warns(CheckpointWarning, match="step-00000002: model.safetensors: not a safetensors file"):
        assert main(train_argv(data, out, "--resume", *common)) == 0
    err = capsys.readouterr().err
    assert "resuming from" in err and "step-00000001 (step 1" in err
    with open(os.path.join(Checkpoints(out).latest(), "train_state.json")) as f:
        assert json.load(f)["step"] == 2  # step 2 trained again and saved whole
    for step in ("00000001", "00000002"):
        zero_length(out / "checkpoints" / f"step-{step}" / "model.safetensors")
    assert main(train_argv(data, out, "--resume", *common)) == 2
    err = capsys.readouterr().err
    assert "tformer train: error: no whole checkpoint to resume from" in err and "step-00000001" in err


# ------------------------------------------------------------------------------ paths outside


@pytest.mark.parametrize("pointer", ["../../elsewhere", "ABSOLUTE", "step-00000002/../../../elsewhere"])
def test_pointer_outside_checkpoints_is_refused(run, tmp_path, pointer):
    outside = tmp_path / "elsewhere"
    shutil.copytree(run / "checkpoints" / "step-00000004", outside)  # a whole checkpoint, but not ours
    if pointer == "ABSOLUTE":
        pointer = str(outside)
    (run / "checkpoints" / "latest").write_text(pointer)
    with pytest.raises(ValueError, match="names .*, which is not inside .*checkpoints: refusing to resume from it"):
        Checkpoints(run).latest()


def test_links_out_of_a_checkpoint_are_refused(run, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(run / "checkpoints" / "step-00000004", outside)
    os.symlink(outside, run / "checkpoints" / "step-00000009")  # a step directory linking elsewhere
    os.unlink(run / "checkpoints" / "latest")  # so that it is the newest
    with pytest.raises(ValueError, match="step-00000009 resolves to .*elsewhere, outside .*checkpoints: refusing"):
        Checkpoints(run).latest()
    os.unlink(run / "checkpoints" / "step-00000009")
    weights = run / "checkpoints" / "step-00000004" / "model.safetensors"
    os.unlink(weights)
    os.symlink(outside / "model.safetensors", weights)  # one file linking elsewhere
    with pytest.raises(ValueError, match="model.safetensors resolves to .*elsewhere.*, outside the checkpoint"):
        Checkpoints(run).latest()


# ------------------------------------------------------------------------------ rendezvous store


def listeners(port):
    """Local addresses (hex, as the kernel prints them) of the TCP sockets listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.read().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.split(":")[1], 16) == port:
                    found.append(local.split(":")[0])
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_store_bind_address_is_master_addr():
    assert distributed.store_bind_address("127.0.0.1", 29500) == (socket.AF_INET, ("127.0.0.1", 29500))
    family, sockaddr = distributed.store_bind_address("localhost", 1234)
    assert sockaddr[0] in ("127.0.0.1", "::1") and sockaddr[1] == 1234


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's socket table")
def test_rendezvous_store_listens_on_master_addr_only():
    port = free_port()
    env = distributed.LaunchEnv(rank=0, world_size=1, local_rank=0, master_addr="127.0.0.1", master_port=port,
                                launcher="env", agent_store=False, local_world_size=1)
    store = distributed.rendezvous_store(env, 5.0)
    try:
        assert listeners(port) == ["0100007F"]  # 127.0.0.1, not 0.0.0.0 or ::
        client = distributed.rendezvous_store(dict_env(env, rank=1), 5.0)
        client.set("k", "v")
        assert store.get("k") == b"v"
        del client
        with pytest.raises(distributed.DistributedError,
                           match=f"rank 0: cannot listen for the rendezvous store on 127.0.0.1:{port} "
                                 r"\(MASTER_ADDR, MASTER_PORT\)"):
            distributed.rendezvous_store(env, 5.0)  # the port is taken
    finally:
        del store
    assert listeners(port) == []  # the store closed its socket


def dict_env(env, **changes):
    import dataclasses

    return dataclasses.replace(env, **changes)


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's socket table")
def test_process_group_store_listens_on_master_addr_only(tmp_path):
    """Through the public API, in a process of its own (a process group is global state):
    rank 0 of a 1-process job hosts the store on MASTER_ADDR, not on every interface."""
    port = free_port()
    script = tmp_path / "rank0.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from tformer import distributed
        from test_checkpoint_durability import listeners
        group = distributed.init(timeout=20)
        print(json.dumps(listeners({port})))
        distributed.shutdown()
    """))
    env = dict(os.environ, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["0100007F"]  # 127.0.0.1 only
