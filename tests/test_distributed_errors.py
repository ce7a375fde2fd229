"""Errors of tformer.distributed: launcher environments that cannot work, ranks that disagree
on the world size or the model, and misuse of the API. Each names what is wrong."""
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import tformer
from tformer import distributed
from tformer.data import shard_batch

GOOD = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_launch_env_torchrun_and_mpirun():
    env = distributed.launch_env(dict(GOOD, TORCHELASTIC_RUN_ID="x", TORCHELASTIC_USE_AGENT_STORE="True",
                                      LOCAL_WORLD_SIZE="2"))
    assert (env.rank, env.world_size, env.local_rank, env.launcher, env.agent_store, env.local_world_size) == \
        (1, 2, 1, "torchrun", True, 2)
    assert distributed.launch_env(GOOD).launcher == "env"
    mpi = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
           "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "MASTER_ADDR": "node0", "MASTER_PORT": "1234"}
    env = distributed.launch_env(mpi)
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.launcher, env.local_world_size) == \
        (3, 4, 1, "node0", "mpirun", 2)
    with pytest.raises(ValueError, match="OMPI_COMM_WORLD_RANK is set but MASTER_ADDR is not"):
        distributed.launch_env({k: v for k, v in mpi.items() if k != "MASTER_ADDR"})
    assert distributed.launch_env({"PATH": "/bin"}) is None


@pytest.mark.parametrize("change,message", [
    ({"WORLD_SIZE": None}, "RANK is set but WORLD_SIZE is not"),
    ({"MASTER_PORT": None}, "RANK is set but MASTER_PORT is not"),
    ({"RANK": "two"}, "RANK='two' is not an integer"),
    ({"RANK": "2"}, "RANK=2 must be in [0, 1]"),
    ({"WORLD_SIZE": "0", "RANK": "0"}, "WORLD_SIZE=0 must be in >= 1"),
    ({"MASTER_PORT": "70000"}, "MASTER_PORT=70000 must be in [1, 65535]"),
    ({"MASTER_ADDR": " "}, "MASTER_ADDR is empty"),
])
def test_bad_launch_env(change, message):
    env = dict(GOOD)
    for k, v in change.items():
        if v is None:
            del env[k]
        else:
            env[k] = v
    with pytest.raises(ValueError) as e:
        distributed.launch_env(env)
    assert message in str(e.value)


def model():
    cfg = tformer.TransformerConfig(src_vocab_size=30, tgt_vocab_size=30, d_model=16, encoder_layers=1,
                                    decoder_layers=1, encoder_heads=2, decoder_heads=2, encoder_ffn_dim=32,
                                    decoder_ffn_dim=32, max_positions=32)
    return tformer.Transformer(cfg, seed=0)


def test_trainer_distributed_without_launcher(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="no launcher environment: start the script with torchrun"):
        tformer.Trainer(model(), distributed=True)
    with pytest.raises(TypeError, match="distributed must be True, False or a tformer.distributed.ProcessGroup"):
        tformer.Trainer(model(), distributed="gloo")


def test_bad_group_arguments():
    env = distributed.launch_env(GOOD)
    with pytest.raises(ValueError, match="backend must be 'gloo' \\(CPU\\) or 'nccl' \\(GPU\\), got 'mpi'"):
        distributed.ProcessGroup(env, backend="mpi")
    with pytest.raises(ValueError, match="backend 'nccl' needs the model on a GPU"):
        distributed.ProcessGroup(env, backend="nccl")
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0"):
        distributed.ProcessGroup(env, timeout=0)


def test_unreachable_store():
    env = distributed.launch_env(dict(GOOD, MASTER_PORT=str(free_port())))  # nobody listens there
    t0 = time.time()
    with pytest.raises(distributed.DistributedError, match="rank 1: cannot reach the rendezvous store at "
                                                           "127.0.0.1:[0-9]+ within 1 s"):
        distributed.ProcessGroup(env, timeout=1)
    assert time.time() - t0 < 15


def test_shard_batch():
    assert shard_batch(list(range(7)), 0, 2) == [0, 2, 4, 6] and shard_batch(list(range(7)), 1, 2) == [1, 3, 5]
    assert shard_batch([5], 1, 2) == []
    with pytest.raises(ValueError, match="rank must be an int in \\[0, 2\\), got 2"):
        shard_batch([1, 2], 2, 2)
    with pytest.raises(ValueError, match="world_size must be an int >= 1, got 0"):
        shard_batch([1, 2], 0, 0)


# ------------------------------------------------------------------------------ processes

SCRIPT = textwrap.dedent("""
    import os, sys
    import tformer
    cfg = tformer.TransformerConfig(src_vocab_size=30, tgt_vocab_size=30, d_model=int(sys.argv[1]),
                                    encoder_layers=1, decoder_layers=1, encoder_heads=2, decoder_heads=2,
                                    encoder_ffn_dim=32, decoder_ffn_dim=32, max_positions=32)
    group = tformer.distributed.init(timeout=float(sys.argv[2]))
    model = tformer.Transformer(cfg, seed=group.rank)  # different weights on each rank...
    tformer.Trainer(model, distributed=group)          # ...until rank 0's are broadcast
    total = sum(float(abs(model._core.parameter(n)).astype("float64").sum()) for n in model._core.parameter_names())
    print("joined", repr(total), flush=True)
""")


def start(tmp_path, ranks, port, d_models=None, timeout=20):
    script = tmp_path / "join.py"
    script.write_text(SCRIPT)
    procs = []
    for rank, world in ranks:
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        d = (d_models or {}).get(rank, 16)
        procs.append(subprocess.Popen([sys.executable, str(script), str(d), str(timeout)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return [(p,) + p.communicate(timeout=120) for p in procs]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_world_size_mismatch(tmp_path):
    (p0, _, err0), (p1, _, err1) = start(tmp_path, [(0, 2), (1, 3)], free_port())
    assert p0.returncode != 0 and p1.returncode != 0
    assert "rank 0: rank 1 was started with world size 3, rank 0 with 2: every process must get the same " \
           "WORLD_SIZE" in err0
    assert "rank 1: rank 0 was started with world size 2, rank 1 with 3" in err1


def test_a_rank_that_never_joins(tmp_path):
    ((p0, _, err0),) = start(tmp_path, [(0, 2)], free_port(), timeout=2)
    assert p0.returncode != 0
    assert "rank 0: rank 1 did not join within 2 s (WORLD_SIZE=2: were 2 processes started?)" in err0


def test_ranks_with_different_models(tmp_path):
    results = start(tmp_path, [(0, 2), (1, 2)], free_port(), d_models={1: 32})
    for p, out, err in results:
        assert p.returncode != 0 and "joined" not in out
        assert "rank 1 has a different model configuration than rank 0" in err


def test_ranks_join_and_agree(tmp_path):
    results = start(tmp_path, [(0, 2), (1, 2)], free_port())
    for p, out, err in results:
        assert p.returncode == 0, err[-2000:]
        assert "joined" in out
    # every rank now holds rank 0's weights (built from seed 0)
    sums = [float(out.split()[1]) for _, out, _ in results]
    assert sums[0] == sums[1]
    m = model()
    assert sums[0] == sum(float(abs(m._core.parameter(n)).astype("float64").sum()) for n in m._core.parameter_names())
