"""Data-parallel training over several processes (``torchrun``), and the one-process case.

``torchrun --nproc_per_node=N train.py ...`` starts N copies of the trainer with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous address in the environment. Every rank builds
the same length-sorted batches from the same seed; rank r trains on every N-th sentence of each
batch and DDP averages the gradients, so one update of N processes sees the same sentences as
one update of a single process, and the loss is normalised by the whole batch's token count.
Only rank 0 validates, logs and writes checkpoints; decisions that must agree (stop now, the
validation BLEU that drives early stopping and the LR schedule) are shared by collectives.
"""

from __future__ import annotations

import datetime
import gc
import os
from typing import Any

import torch
import torch.distributed as dist

from seq2seq.errors import ConfigError

STORE_TIMEOUT = datetime.timedelta(minutes=5)  # a rank missing from a restarted group fails, not hangs


def _attempt_store(rank: int, world: int) -> dict[str, Any]:
    """Under torchrun, a key space of its own for each attempt of the process group.

    torchrun's workers share the rendezvous leader's store, which outlives a restart, and the
    process group keeps its peers' addresses there under the same keys every time: a restarted
    rank can read the address of a worker that died with the previous attempt and fail to
    connect, while its peer waits for ever for a key written elsewhere (pytorch/pytorch#167288).
    The agents' restart counts cannot name the attempt (an agent that restarts its workers
    because another node rejoined does not count it), so the workers count themselves: each adds
    one to a counter in the store as it starts, and arrivals ``world * g + 1 … world * (g + 1)``
    are attempt g. The store gives up after :data:`STORE_TIMEOUT`, so a worker that died before
    it arrived costs a restart, not a hang. Outside torchrun: the default.
    """
    if "TORCHELASTIC_RUN_ID" not in os.environ or "MASTER_ADDR" not in os.environ:
        return {}
    address, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(address, port, world, is_master=rank == 0 and not agent_store, timeout=STORE_TIMEOUT)
    attempt = (store.add("seq2seq/arrivals", 1) - 1) // world
    return {"store": dist.PrefixStore(f"seq2seq/attempt{attempt}", store), "rank": rank, "world_size": world}


class Distributed:
    """Rank, world size and the few collectives the trainer needs; no-ops in one process."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0):
        self.rank, self.world, self.local_rank = rank, world, local_rank

    @classmethod
    def from_env(cls, device: str) -> Distributed:
        """Join the process group that ``torchrun`` describes in the environment (if any)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if use_cuda:
            if torch.cuda.device_count() <= local_rank:
                raise ConfigError(
                    f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                    "start at most one process per GPU (torchrun --nproc_per_node)"
                )
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo", **_attempt_store(rank, world))
        return cls(rank, world, local_rank)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, name: str) -> str:
        """Each rank's device: ``cuda`` becomes ``cuda:<local rank>``."""
        if self.enabled and (name == "cuda" or (name == "auto" and torch.cuda.is_available())):
            return f"cuda:{self.local_rank}"
        return name

    def shard(self, index: list[int]) -> list[int]:
        """This rank's share of one batch's sentences."""
        return index[self.rank :: self.world]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum over ranks (one small all-reduce)."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def close(self, wait: bool) -> None:
        """Leave the process group; with ``wait``, only once every rank has finished.

        A DDP wrapper left for the interpreter's exit keeps the gloo group, and its worker threads,
        alive into finalisation, where tearing them down can abort the process (SIGABRT,
        "terminate called without an active exception") after a run that saved everything. So
        collect such garbage first, and let no rank tear down while another still communicates.
        """
        if self.enabled and dist.is_initialized():
            gc.collect()
            if wait:
                dist.barrier()
            dist.destroy_process_group()
