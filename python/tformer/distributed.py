"""Data-parallel training over torch.distributed: gloo between CPU processes, NCCL between
GPUs. Every process (rank) holds a full model replica; the gradients are summed with
all-reduce in buckets that start while the backward is still running, so every rank then
takes the identical AdamW step.

Start the processes with the launcher (it sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT):

    torchrun --nproc-per-node 2 my_script.py               # one machine, 2 processes
    torchrun --nnodes 4 --node-rank $I --nproc-per-node 8 \\
             --master-addr node0 --master-port 29500 my_script.py   # 4 machines x 8 GPUs

and in the script:

    >>> trainer = tformer.Trainer(model, distributed=True)
    >>> loss = trainer.step(*corpus.batch(shard(batch, trainer.rank, trainer.world_size)))

Faults: every collective has a timeout, and each rank runs a heartbeat through the
rendezvous store. When a collective fails (a peer died: at once; a peer hangs: after the
timeout), the error names the ranks whose heartbeat stopped (DistributedError).
"""
from __future__ import annotations

import atexit
import datetime
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import shard_batch

DEFAULT_TIMEOUT = 300.0   # seconds a collective may wait for the slowest rank
HEARTBEAT_SECONDS = 1.0   # a rank whose counter stands still for 3 beats is reported
WAIT_STALL_SECONDS = 10.0  # wait_for gives up on a rank whose heartbeat stood still this long
STORE_SECONDS = 5.0        # a store operation without an answer this long: its host is gone or frozen


class DistributedError(RuntimeError):
    """A collective failed or timed out; the message names the rank(s) that stopped."""


# ------------------------------------------------------------------------------ launcher


@dataclass
class LaunchEnv:
    """What the launcher told this process."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    launcher: str          # "torchrun", "mpirun" or "env" (variables set by hand)
    agent_store: bool      # torchrun's agent hosts the rendezvous store (no worker does)
    local_world_size: int  # processes on this machine (they share its cores)


def _int_var(environ, name, lo, hi=None):
    value = environ.get(name)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None
    if number < lo or (hi is not None and number > hi):
        bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"environment variable {name}={number} must be in {bound}")
    return number


def launch_env(environ=None):
    """The launcher's settings (torchrun's RANK/WORLD_SIZE/LOCAL_RANK or mpirun's
    OMPI_COMM_WORLD_*, plus MASTER_ADDR/MASTER_PORT), or None when no launcher started us.
    Raises ValueError naming the variable that is missing or wrong."""
    environ = os.environ if environ is None else environ
    if "RANK" in environ or "WORLD_SIZE" in environ:
        launcher = "torchrun" if "TORCHELASTIC_RUN_ID" in environ else "env"
        names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
    elif "OMPI_COMM_WORLD_RANK" in environ:
        launcher = "mpirun"
        names = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                 "OMPI_COMM_WORLD_LOCAL_SIZE")
    else:
        return None
    for name in names[:2] + ("MASTER_ADDR", "MASTER_PORT"):
        if name not in environ:
            raise ValueError(f"{names[0]} is set but {name} is not: start the processes with torchrun "
                             "(or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT for every process)")
    world = _int_var(environ, names[1], 1)
    rank = _int_var(environ, names[0], 0, world - 1)
    local = _int_var(environ, names[2], 0) if names[2] in environ else rank
    local_world = _int_var(environ, names[3], 1) if names[3] in environ else world
    port = _int_var(environ, "MASTER_PORT", 1, 65535)
    addr = environ["MASTER_ADDR"].strip()
    if not addr:
        raise ValueError("environment variable MASTER_ADDR is empty")
    agent = environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    return LaunchEnv(rank, world, local, addr, port, launcher, agent, local_world)


# ------------------------------------------------------------------------------ the store


def store_bind_address(master_addr: str, port: int):
    """(family, socket address) that rank 0's rendezvous store listens on: the address
    MASTER_ADDR resolves to here (the first answer, the one a client on this machine tries
    first), never all interfaces. The store has no authentication: who can connect can
    join the job or disturb it (docs/SCALING.md)."""
    family, _, _, _, sockaddr = socket.getaddrinfo(master_addr, port, type=socket.SOCK_STREAM)[0]
    return family, sockaddr


def _listening_socket(master_addr: str, port: int) -> socket.socket:
    family, sockaddr = store_bind_address(master_addr, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as torch's own server does
        sock.bind(sockaddr)
        sock.listen(socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return sock


def rendezvous_store(env: LaunchEnv, timeout: float):
    """This rank's handle on the job's TCPStore (the heartbeat and the diagnosis of failures
    use it). Rank 0 hosts it unless torchrun's agent or an existing process group already
    does; hosting, it listens on MASTER_ADDR only (torch's server alone would listen on
    every interface)."""
    _, dist = _torch_dist()
    td = datetime.timedelta(seconds=timeout)
    host = env.rank == 0 and not env.agent_store and not dist.is_initialized()
    where = f"{env.master_addr}:{env.master_port}"
    listener = None
    if host:
        try:
            listener = _listening_socket(env.master_addr, env.master_port)
        except OSError as e:
            raise DistributedError(f"rank 0: cannot listen for the rendezvous store on {where} "
                                   f"(MASTER_ADDR, MASTER_PORT): {e}") from None
    try:
        if listener is not None:
            # the store owns (and closes) the descriptor it is given: hand it a duplicate
            return dist.TCPStore(env.master_addr, env.master_port, env.world_size, is_master=True, timeout=td,
                                 wait_for_workers=False, master_listen_fd=os.dup(listener.fileno()))
        return dist.TCPStore(env.master_addr, env.master_port, env.world_size, is_master=False, timeout=td,
                             wait_for_workers=False)
    except (RuntimeError, OSError) as e:
        raise DistributedError(f"rank {env.rank}: cannot reach the rendezvous store at {where} within "
                               f"{timeout:g} s ({e})") from None
    finally:
        if listener is not None:
            listener.close()


# ------------------------------------------------------------------------------ the group


def _torch_dist():
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        raise ImportError("distributed training needs PyTorch's collectives: pip install torch") from None
    if not dist.is_available():
        raise ImportError("this PyTorch build has no torch.distributed")
    return torch, dist


class ProcessGroup:
    """One rank's membership in the training job: collectives with timeouts, a heartbeat,
    and error messages that name the rank that failed.

    backend: "gloo" (CPU, default when device is cpu) or "nccl" (device cuda:N)."""

    def __init__(self, env: LaunchEnv | None = None, backend: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 device: str = "cpu"):
        torch, dist = _torch_dist()
        env = env or launch_env()
        if env is None:
            raise ValueError("distributed=True but no launcher environment: start the script with torchrun "
                             "(e.g. torchrun --nproc-per-node 2 script.py), which sets RANK and WORLD_SIZE")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if device.startswith("cuda"):
            backend = backend or "nccl"
        backend = backend or "gloo"
        if backend not in ("gloo", "nccl"):
            raise ValueError(f"backend must be 'gloo' (CPU) or 'nccl' (GPU), got {backend!r}")
        if backend == "nccl" and not device.startswith("cuda"):
            raise ValueError("backend 'nccl' needs the model on a GPU (device cuda:N); CPU processes use 'gloo'")
        self.env, self.rank, self.world_size, self.backend = env, env.rank, env.world_size, backend
        self.timeout = float(timeout)
        self.device = device
        td = datetime.timedelta(seconds=self.timeout)
        self._store = rendezvous_store(env, self.timeout)
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        self._prefix = f"tformer/{attempt}/"
        self._check_world_size()
        store = dist.PrefixStore(self._prefix + "pg/", self._store)
        if backend == "nccl":
            torch.cuda.set_device(int(device.split(":")[1]) if ":" in device else env.local_rank)
        self._dist, self._torch = dist, torch
        self._pg = None
        if not dist.is_initialized():
            dist.init_process_group(backend, store=store, rank=env.rank, world_size=env.world_size, timeout=td)
            self._owns_default = True
        else:
            self._owns_default = False
            self._pg = dist.new_group(backend=backend, timeout=td)
        self._failed = False
        self._stop = threading.Event()
        self._heart = threading.Thread(target=self._heartbeat, name=f"tformer-heartbeat-{self.rank}", daemon=True)
        self._heart.start()
        atexit.register(self.close)  # a daemon thread inside a store call at exit aborts the process

    def __repr__(self):
        return f"ProcessGroup(rank={self.rank}, world_size={self.world_size}, backend={self.backend!r})"

    # -------------------------------------------------------------- liveness

    def _key(self, name):
        return self._prefix + name

    def _check_world_size(self):
        """Every rank must have been told the same world size (a wrong --nproc-per-node
        or WORLD_SIZE would otherwise hang the first collective)."""
        self._store.set(self._key(f"world/{self.rank}"), str(self.world_size))
        deadline = time.time() + self.timeout
        for r in range(1, self.world_size) if self.rank == 0 else [0]:
            key = self._key(f"world/{r}")
            while not self._store.check([key]):
                if time.time() > deadline:
                    raise DistributedError(f"rank {self.rank}: rank {r} did not join within {self.timeout:g} s "
                                           f"(WORLD_SIZE={self.world_size}: were {self.world_size} processes started?)")
                time.sleep(0.05)
            other = int(self._store.get(key))
            if self.rank != 0:  # rank 0 hosts the store: it must not exit before this read
                self._store.set(self._key(f"world/read/{self.rank}"), "1")
            elif other != self.world_size:
                self._wait_until_read(r)
            if other != self.world_size:
                raise DistributedError(f"rank {self.rank}: rank {r} was started with world size {other}, rank "
                                       f"{self.rank} with {self.world_size}: every process must get the same "
                                       "WORLD_SIZE")

    def _wait_until_read(self, r, seconds=10.0):
        """Rank 0 is about to fail start-up because of rank r: give r (bounded) time to read
        rank 0's world size, so that it reports the mismatch too, not a vanished store."""
        deadline = time.time() + min(seconds, self.timeout)
        while time.time() < deadline and not self._store.check([self._key(f"world/read/{r}")]):
            time.sleep(0.05)

    def _heartbeat(self):
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._store.add(self._key(f"beat/{self.rank}"), 1)
            except Exception:  # the store's host is gone: the next collective reports it
                return

    def _bounded(self, fn):
        """fn() on a daemon thread, given up after STORE_SECONDS: a TCPStore client waits
        forever for a host that is frozen (only get/wait have timeouts)."""
        box = {}

        def call():
            try:
                box["value"] = fn()
            except BaseException as e:  # handed to the caller
                box["error"] = e

        t = threading.Thread(target=call, name="tformer-store-call", daemon=True)
        t.start()
        t.join(STORE_SECONDS)
        if t.is_alive():
            raise TimeoutError(f"no answer within {STORE_SECONDS:g} s")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _store_lost(self, error) -> DistributedError:
        self._failed = True
        host = "rank 0" if not self.env.agent_store else "the launcher (torchrun) of the first node"
        first = (str(error).strip().splitlines() or [""])[0]
        return DistributedError(f"rank {self.rank}: the rendezvous store at {self.env.master_addr}:"
                                f"{self.env.master_port} is unreachable ({type(error).__name__}: {first}): {host}, "
                                f"which hosts it, has died or hangs")

    def _beats_now(self) -> list:
        return self._bounded(lambda: [self._store.add(self._key(f"beat/{r}"), 0) for r in range(self.world_size)])

    def silent_ranks(self, wait: float | None = None) -> list:
        """Ranks whose heartbeat does not advance over `wait` seconds (default 3 beats).
        Raises DistributedError when the store itself is unreachable."""
        wait = 3 * HEARTBEAT_SECONDS if wait is None else wait
        try:
            before = self._beats_now()
            time.sleep(wait)
            after = self._beats_now()
        except Exception as e:
            raise self._store_lost(e) from None
        return [r for r in range(self.world_size) if r != self.rank and after[r] == before[r]]

    def _failure(self, what, error) -> DistributedError:
        self._failed = True  # close() must not wait for peers that are gone
        try:
            silent = self.silent_ranks()
            if silent:
                who = ", ".join(f"rank {r}" for r in silent)
                cause = f"{who} stopped responding (no heartbeat for {3 * HEARTBEAT_SECONDS:g} s: died or hung)"
            else:
                cause = "every other rank is still alive: the collective itself failed"
        except DistributedError as e:
            cause = str(e).split(": ", 1)[1]  # the store's host, named
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return DistributedError(f"rank {self.rank}: {what} failed: {cause} [{first}]")

    @contextmanager
    def guard(self, what: str):
        """Turns a failed collective into a DistributedError naming the silent rank(s)."""
        try:
            yield
        except DistributedError:
            raise
        except RuntimeError as e:  # torch's DistBackendError / gloo errors are RuntimeErrors
            raise self._failure(what, e) from None

    # -------------------------------------------------------------- collectives

    def _as_torch(self, array):
        t = self._torch.from_numpy(array)
        return t.to(self.device) if self.backend == "nccl" else t

    def all_reduce(self, values, op: str = "sum") -> np.ndarray:
        """Element-wise sum (or max) of a small numpy array over all ranks (a new array)."""
        array = np.ascontiguousarray(np.array(values, copy=True))
        t = self._as_torch(array)
        red = {"sum": self._dist.ReduceOp.SUM, "max": self._dist.ReduceOp.MAX}[op]
        with self.guard(f"all_reduce({op})"):
            self._dist.all_reduce(t, op=red, group=self._pg)
        return t.cpu().numpy() if self.backend == "nccl" else array

    def broadcast(self, array: np.ndarray, src: int = 0) -> np.ndarray:
        """`array` of rank `src`, on every rank (a new array)."""
        array = np.ascontiguousarray(np.array(array, copy=True))
        t = self._as_torch(array)
        with self.guard("broadcast"):
            self._dist.broadcast(t, src=src, group=self._pg)
        return t.cpu().numpy() if self.backend == "nccl" else array

    def all_gather_int(self, value: int) -> list:
        """One int64 from every rank, in rank order."""
        mine = np.zeros(self.world_size, dtype=np.int64)
        mine[self.rank] = value
        return [int(v) for v in self.all_reduce(mine)]

    def barrier(self):
        """Returns once every rank has called it."""
        self.all_reduce(np.zeros(1, dtype=np.int64))

    def wait_for(self, src: int, tag: str, poll: float = 0.05):
        """Waits until rank `src` calls `arrive(tag)`, for as long as `src` is alive (its
        heartbeat advances): rank 0 may write checkpoints or evaluate for longer than the
        collective timeout without the others giving up."""
        key, beat_key = self._key(f"arrive/{tag}"), self._key(f"beat/{src}")
        last, last_change = None, time.time()
        while True:
            try:
                arrived, beat = self._bounded(lambda: (self._store.check([key]), self._store.add(beat_key, 0)))
            except Exception as e:
                raise self._store_lost(e) from None
            if arrived:
                return
            if beat != last:
                last, last_change = beat, time.time()
            elif time.time() - last_change > WAIT_STALL_SECONDS:  # Python holding the GIL that long: stuck
                raise DistributedError(f"rank {self.rank}: rank {src} stopped responding while this rank waited "
                                       f"for it ({tag}): no heartbeat for {time.time() - last_change:.0f} s")
            time.sleep(poll)
            poll = min(0.5, poll * 1.2)  # quick for short waits, light on the store for long ones

    def arrive(self, tag: str):
        """Marks this rank as arrived at `tag` (wait_for on another rank sees it)."""
        self._store.set(self._key(f"arrive/{tag}"), "1")

    def close(self):
        """Stops the heartbeat and leaves the process group."""
        self._stop.set()
        if self._heart.is_alive() and self._heart is not threading.current_thread():
            self._heart.join(timeout=2 * HEARTBEAT_SECONDS)
        if self._owns_default and self._dist.is_initialized() and not self._failed:
            try:
                self._dist.destroy_process_group()
            except Exception:
                pass


_GROUP = None


def init(backend: str | None = None, timeout: float = DEFAULT_TIMEOUT, device: str = "cpu") -> ProcessGroup:
    """This process's ProcessGroup (created on the first call from the launcher's
    environment; later calls return the same one)."""
    global _GROUP
    if _GROUP is None:
        _GROUP = ProcessGroup(backend=backend, timeout=timeout, device=device)
    return _GROUP


def shutdown():
    """Leaves the job (the heartbeat stops); init() may start a new one."""
    global _GROUP
    if _GROUP is not None:
        _GROUP.close()
        _GROUP = None


shard = shard_batch  # this rank's part of a global batch (tformer.data.shard_batch)


# ------------------------------------------------------------------------------ gradients


class _CudaBuffer:
    """__cuda_array_interface__ of the flat gradient buffer, so torch views it (no copy)."""

    def __init__(self, address, numel):
        self.__cuda_array_interface__ = {"shape": (numel,), "typestr": "<f4", "data": (address, False),
                                         "version": 3, "strides": None}


class GradientReducer:
    """Sums the flat gradient buffer of a TrainGraph over all ranks, bucket by bucket:
    `on_ready(i)` (called by the C++ backward as bucket i becomes final) starts an async
    all-reduce; `finish()` waits for them all. The gradients were scaled by 1/(global
    token count) before the backward, so the sum is the gradient of the global mean loss."""

    def __init__(self, group: ProcessGroup, graph):
        self.group = group
        torch, dist = group._torch, group._dist
        if group.backend == "nccl":
            address, numel, device = graph.flat_grad_pointer()
            flat = torch.as_tensor(_CudaBuffer(address, numel), device=device)
        else:
            flat = torch.from_numpy(graph.flat_grad())
        self._flat = flat
        self.buckets = [flat[o:o + n] for o, n in graph.buckets]
        self._pending: list[Any] = []  # torch.distributed work handles
        self._op = dist.ReduceOp.SUM
        self.exposed_seconds = 0.0   # time finish() spent waiting after the backward returned
        self.first_ready: float | None = None  # time the first bucket was announced (for the bench)

    def on_ready(self, bucket: int):
        """Starts the all-reduce of gradient bucket `bucket` (called by the backward as it is final)."""
        if not self._pending:
            self.first_ready = time.perf_counter()
        with self.group.guard(f"all_reduce of gradient bucket {bucket}"):
            self._pending.append(self.group._dist.all_reduce(self.buckets[bucket], op=self._op,
                                                             group=self.group._pg, async_op=True))

    def reduce_all(self):
        """All buckets at once (a rank with no sentences in this step, or no overlap wanted)."""
        for i in range(len(self.buckets)):
            self.on_ready(i)
        self.finish()

    def finish(self):
        """Waits for every bucket's all-reduce; the gradients are then the sum over the ranks."""
        t0 = time.perf_counter()
        pending, self._pending = self._pending, []
        if len(pending) != len(self.buckets):
            raise DistributedError(f"rank {self.group.rank}: {len(pending)} of {len(self.buckets)} gradient "
                                   "buckets were reduced (the backward did not announce them all)")
        with self.group.guard("all_reduce of the gradients"):
            for work in pending:
                work.wait()
        if self.group.backend == "nccl":
            self.group._torch.cuda.current_stream().synchronize()  # before tformer's stream reads them
        self.exposed_seconds = time.perf_counter() - t0
