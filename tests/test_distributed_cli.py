"""`tformer train` under torchrun: 2 processes with --max-tokens B, then resumed on 1 process,
train exactly like 1 process with --max-tokens 2B (same global batches, same losses)."""
import glob
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file
from test_train_cli import EN, FR, write
from tformer.cli import main


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    return dict(src=write(d / "train.fr", FR * 6), tgt=write(d / "train.en", EN * 6),
                vsrc=write(d / "valid.fr", FR[:4]), vtgt=write(d / "valid.en", EN[:4]))


def argv(data, out, *extra):
    # dropout 0: each rank draws its own masks, so only then is the comparison exact
    return ["train", "--src", data["src"], "--tgt", data["tgt"], "--valid-src", data["vsrc"], "--valid-tgt",
            data["vtgt"], "--out", str(out), "--config", "tiny", "--vocab-size", "80", "--warmup-steps", "10",
            "--eval-sentences", "2", "--quiet", "--dropout", "0", "--log-every", "1", "--eval-every", "4",
            "--threads", "1", *extra]


def history(out):
    latest = sorted(glob.glob(os.path.join(out, "checkpoints", "step-*", "train_state.json")))[-1]
    with open(latest) as f:
        return json.load(f)


def test_two_processes_then_one_match_one_process(data, tmp_path):
    ref, two = tmp_path / "ref", tmp_path / "two"
    assert main(argv(data, ref, "--max-tokens", "200", "--max-steps", "8")) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           "-m", "tformer.cli", *argv(data, two, "--max-tokens", "100", "--max-steps", "4", "--tokenizer", str(ref))]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "2 processes (gloo), 200 tokens per global batch" in run.stderr
    state = history(two)
    assert state["step"] == 4 and state["world_size"] == 2 and state["max_tokens"] == 200
    # resume the 2-process checkpoint on 1 process (its --max-tokens is ignored: the global
    # budget of the run is in the checkpoint)
    assert main(argv(data, two, "--max-tokens", "100", "--max-steps", "8", "--resume")) == 0
    a, b = history(ref), history(two)
    assert b["step"] == 8 and b["world_size"] == 1 and (b["epoch"], b["batch"]) == (a["epoch"], a["batch"])
    assert b["tokens"] == a["tokens"]
    train_a = [h["loss"] for h in a["history"] if "loss" in h]
    train_b = [h["loss"] for h in b["history"] if "loss" in h]
    assert len(train_a) == 8
    np.testing.assert_allclose(train_b, train_a, rtol=1e-5)  # summation order only
    valid_a = [h["valid_loss"] for h in a["history"] if "valid_loss" in h]
    valid_b = [h["valid_loss"] for h in b["history"] if "valid_loss" in h]
    np.testing.assert_allclose(valid_b, valid_a, rtol=1e-5)
    # Weights: the attention key biases get no gradient in exact arithmetic (softmax ignores
    # a shift), so Adam (eps 1e-9) moves them by rounding noise: left out. Elsewhere, a
    # gradient that is a near-cancelling sum can still differ by ~1% between the two
    # summation orders, which Adam turns into ~1% of a step: bound the bulk tightly and
    # the worst element by a few percent of lr x steps.
    wa, wb = load_file(str(ref / "model.safetensors")), load_file(str(two / "model.safetensors"))
    diffs = np.concatenate([np.abs(wa[k] - wb[k]).ravel() for k in wa if not k.endswith("kv.bias")])
    assert np.percentile(diffs, 99.9) < 1e-5 and diffs.max() < 2e-3, (np.percentile(diffs, 99.9), diffs.max())
    moved = load_file(str(sorted(glob.glob(str(ref / "checkpoints" / "step-*")))[0] + "/model.safetensors"))
    assert max(np.abs(wa[k] - moved[k]).max() for k in wa) > 0.01  # steps 5-8 changed the weights


def test_distributed_flag_without_launcher(data, tmp_path, capsys, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert main(argv(data, tmp_path / "m", "--distributed")) == 2
    assert "--distributed: no launcher environment (RANK, WORLD_SIZE): start the command with torchrun" in \
        capsys.readouterr().err


@pytest.mark.parametrize("flag,value,message", [("--dist-timeout", "0", "--dist-timeout must be > 0 seconds"),
                                                ("--bucket-mb", "-1", "--bucket-mb must be >= 0")])
def test_distributed_argument_errors(data, tmp_path, capsys, flag, value, message):
    assert main(argv(data, tmp_path / "m", flag, value)) == 2
    assert message in capsys.readouterr().err


def test_killed_rank_stops_tformer_train_with_its_name(data, tmp_path):
    """Two `tformer train` processes started the way torchrun starts them; rank 1 is killed
    mid-run: rank 0 prints an error naming rank 1 and exits with status 3 within the
    --dist-timeout, and the run's last checkpoint stays complete."""
    port, out, procs = free_port(), tmp_path / "m", []
    for rank in (0, 1):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, "-m", "tformer.cli",
                                       *argv(data, out, "--max-tokens", "100", "--max-steps", "100000",
                                             "--dist-timeout", "8", "--eval-every", "5", "--eval-sentences", "0")],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # rank 0 logs every 10 steps (--log-every 1, --quiet)
            line = procs[0].stderr.readline()
            if line.startswith("step 20:") or (not line and procs[0].poll() is not None):
                break
        assert line.startswith("step 20:"), line
        t0 = time.time()
        procs[1].kill()
        _, err = procs[0].communicate(timeout=60)
        elapsed = time.time() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert procs[0].returncode == 3, err[-2000:]
    assert "tformer train: error: rank 0: " in err and "rank 1 stopped responding" in err, err[-2000:]
    assert elapsed < 8 + 3 + 10
    state = history(str(out))  # the newest complete checkpoint
    assert state["step"] >= 20 and state["step"] % 5 == 0
