"""Data-parallel training with real processes on loopback (gloo): 2 ranks x half a batch
must match 1 process x the whole batch; a killed or hung rank must stop the other with an
error naming it, within the collective timeout."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

# The worker: a small model, global batches drawn from a fixed generator (odd sizes and a
# one-sentence batch included, so a rank sometimes gets fewer sentences or none).
WORKER = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    import tformer
    from tformer.distributed import shard

    mode, out, steps, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    micro = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    tformer.set_num_threads(1)
    cfg = tformer.TransformerConfig(src_vocab_size=50, tgt_vocab_size=50, d_model=32, encoder_layers=2,
                                    decoder_layers=2, encoder_heads=4, decoder_heads=4, encoder_ffn_dim=64,
                                    decoder_ffn_dim=64, max_positions=64)
    device = os.environ.get("TF_DEVICE", "cpu")
    model = tformer.Transformer(cfg, seed=1, device=device)
    distributed = "WORLD_SIZE" in os.environ
    group = tformer.distributed.init(timeout=timeout, device=model.device) if distributed else None
    trainer = tformer.Trainer(model, lr=3e-3, warmup_steps=2, dropout=0.0, label_smoothing=0.1, clip_norm=0.5, eps=1e-6,
                              distributed=group or False, bucket_mb=0.01)
    rank, world = trainer.rank, trainer.world_size
    rng = np.random.default_rng(7)
    sizes = [6, 5, 1, 8, 3]
    losses, grads = [], None
    for step in range(steps):
        n = sizes[step % len(sizes)]
        src = [list(rng.integers(3, 50, size=rng.integers(2, 12))) + [2] for _ in range(n)]
        tgt = [list(rng.integers(3, 50, size=rng.integers(1, 10))) for _ in range(n)]
        idx = list(range(n))
        mine = shard(idx, rank, world)
        losses.append(trainer.step([src[i] for i in mine], [tgt[i] for i in mine], micro_batches=micro))
        if step == 0:
            grads = {k: v.copy() for k, v in trainer.gradients().items()}
        if mode == "forever":
            print(f"rank {rank} step {step}", flush=True)
    np.savez(os.path.join(out, f"rank{rank}.npz"), **{"p." + n: np.asarray(model._core.parameter(n))
                                                       for n in model._core.parameter_names()},
             **{"g." + k: v for k, v in grads.items()})
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"losses": losses, "norm": trainer.last_grad_norm}, f)
""")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp_path, world, *args, port=None, env_extra=None):
    """Starts `world` worker processes the way torchrun does (RANK, WORLD_SIZE, MASTER_*)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = port or free_port()
    procs = []
    for rank in range(world):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        if world > 1:
            env.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                       MASTER_PORT=str(port))
        env.update((env_extra or {}).get(rank, {}))
        procs.append(subprocess.Popen([sys.executable, str(script), *map(str, args)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs, timeout=120):
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-3000:]
        outs.append(out)
    return outs


def results(out, rank):
    with open(out / f"rank{rank}.json") as f:
        meta = json.load(f)
    return meta, dict(np.load(out / f"rank{rank}.npz"))


# Tolerances: the two runs sum the same float32 terms in a different order (each rank sums
# its sentences, then the all-reduce adds the two sums; padding differs too), so losses and
# gradients agree to ~1e-6 relative. AdamW divides by sqrt(v) + eps: with the paper's
# eps = 1e-9 a gradient that is zero in exact arithmetic and only rounding noise (the
# attention key bias: softmax ignores a shift) would move by ±lr either way, so the worker
# uses eps = 1e-6, and the weights then agree to 2e-5 after 5 steps of lr 3e-3.
LOSS_RTOL = 1e-5
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-7
WEIGHT_ATOL = 2e-5


@pytest.mark.parametrize("micro", [1, 2])
def test_two_ranks_match_one_process(tmp_path, micro):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    steps = 5
    finish(launch(tmp_path, 1, "train", one, steps, 30, micro) + launch(tmp_path, 2, "train", two, steps, 30, micro))
    ref, ref_arrays = results(one, 0)
    for rank in (0, 1):
        meta, arrays = results(two, rank)
        # the loss of the global batch, on every rank
        np.testing.assert_allclose(meta["losses"], ref["losses"], rtol=LOSS_RTOL)
        np.testing.assert_allclose(meta["norm"], ref["norm"], rtol=1e-4)
        for name, value in ref_arrays.items():
            if name.startswith("g."):
                np.testing.assert_allclose(arrays[name], value, rtol=GRAD_RTOL, atol=GRAD_ATOL, err_msg=name)
            else:
                np.testing.assert_allclose(arrays[name], value, rtol=0, atol=WEIGHT_ATOL, err_msg=name)
    # the replicas stay identical: every rank took the same update from the same gradients
    _, a0 = results(two, 0)
    _, a1 = results(two, 1)
    for name in a0:
        np.testing.assert_array_equal(a0[name], a1[name], err_msg=name)
    # and training moved the weights far more than the tolerance (the check can fail)
    start = tmp_path / "start"
    start.mkdir()
    finish(launch(tmp_path, 1, "train", start, 0 + 1, 30))
    _, first = results(start, 0)
    moved = max(np.abs(ref_arrays[n] - first[n]).max() for n in ref_arrays if n.startswith("p.") and
                "positions" not in n and "final_logits_bias" not in n)
    assert moved > 20 * WEIGHT_ATOL


def test_one_rank_under_the_launcher_matches_plain_training(tmp_path, device):
    """1 rank with the collective library (gloo on the CPU, NCCL on a GPU) equals no library."""
    plain, one = tmp_path / "plain", tmp_path / "one"
    plain.mkdir()
    one.mkdir()
    env = {0: {"TF_DEVICE": device}}
    finish(launch(tmp_path, 1, "train", plain, 3, 30, env_extra=env))
    env[0].update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    finish(launch(tmp_path, 1, "train", one, 3, 30, env_extra=env))
    ref, ref_arrays = results(plain, 0)
    meta, arrays = results(one, 0)
    np.testing.assert_allclose(meta["losses"], ref["losses"], rtol=1e-6)
    for name, value in ref_arrays.items():
        np.testing.assert_allclose(arrays[name], value, rtol=1e-5, atol=1e-7, err_msg=name)


def wait_for_line(proc, text, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if text in line:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"worker ended before '{text}': {proc.stderr.read()[-2000:]}")
    raise AssertionError(f"no '{text}' within {timeout} s")


@pytest.mark.parametrize("fault,victim", [("kill", 1), ("hang", 1), ("kill", 0), ("hang", 0)])
def test_a_lost_rank_stops_the_other_with_its_name(tmp_path, fault, victim):
    """A rank is killed (SIGKILL) or frozen (SIGSTOP) mid-run: the other must exit non-zero
    within the collective timeout (+ the heartbeat check), naming it. Rank 0 hosts the
    rendezvous store, so its death is reported through the store."""
    timeout = 6.0
    procs = launch(tmp_path, 2, "forever", tmp_path, 100000, timeout)
    survivor = procs[1 - victim]
    try:
        wait_for_line(procs[1], "rank 1 step 3", 90)
        t0 = time.time()
        os.kill(procs[victim].pid, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
        _, err = survivor.communicate(timeout=timeout + 30)
        elapsed = time.time() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()  # reaps it and closes its pipes
    assert survivor.returncode != 0
    assert "DistributedError" in err, err[-2000:]
    if victim == 1:
        assert "rank 0: " in err and "rank 1 stopped responding" in err, err[-2000:]
    else:
        assert "rank 1: " in err and "rank 0, which hosts it, has died" in err, err[-2000:]
    # the collective timeout + the heartbeat check (3 beats) or the store's silence (5 s) +
    # slack for a loaded machine
    assert elapsed < timeout + 5.0 + 10, elapsed


WAITER = textwrap.dedent("""
    import sys, time
    import tformer
    from tformer import distributed
    distributed.WAIT_STALL_SECONDS = 3.0
    distributed.STORE_SECONDS = 2.0
    group = distributed.init(timeout=3)
    if group.rank == 0:
        time.sleep(4.5)        # longer than the collective timeout: the waiter must not give up
        group.arrive("saved")
        print("arrived", flush=True)
        time.sleep(60)         # the test freezes this process now
    else:
        t0 = time.time()
        group.wait_for(0, "saved")
        assert time.time() - t0 > 3.0  # past the collective timeout
        print(f"waited {time.time() - t0:.1f}", flush=True)
        group.wait_for(0, "never")
""")


def test_waiting_for_rank0_lasts_while_it_lives(tmp_path):
    """Ranks wait for rank 0's checkpoint longer than the collective timeout while its
    heartbeat advances, and stop with an error naming it once it is frozen (rank 0 hosts
    the store, so the store stops answering: reported within STORE_SECONDS, 2 s here)."""
    script = tmp_path / "waiter.py"
    script.write_text(WAITER)
    port, procs = free_port(), []
    for rank in (0, 1):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    try:
        wait_for_line(procs[1], "waited", 90)
        t0 = time.time()
        os.kill(procs[0].pid, signal.SIGSTOP)
        out, err = procs[1].communicate(timeout=60)
        elapsed = time.time() - t0
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    assert procs[1].returncode != 0
    assert "rank 1: the rendezvous store at 127.0.0.1" in err and "rank 0, which hosts it, has died or hangs" in err, \
        err[-2000:]
    assert elapsed < 2 + 10
