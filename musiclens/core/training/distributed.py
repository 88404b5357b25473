"""Training on several processes: ``musiclens train ... --distributed`` under ``torchrun``.

One process per device (``torchrun --nproc_per_node N``, several machines with ``--nnodes``);
:func:`init_from_env` reads the variables torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), starts the process group (gloo on the CPU,
NCCL on GPUs, ``cuda:LOCAL_RANK`` per process) and returns a :class:`World`, which the audio
training loop (:func:`musiclens.core.training.loop.train`) uses to

* wrap the net in ``DistributedDataParallel`` (gradients averaged over the processes);
* shard each **global** batch: every process draws the same seeded permutation of the
  training patches as a one-process run, takes global batch ``b`` (``batch_size`` patches)
  and keeps its strided share ``batch[rank::world_size]`` — what torch's
  ``DistributedSampler`` does to an epoch, but without its padding (which repeats patches)
  or dropping, so the global batches are exactly those of one process. Each process's loss
  is weighted by its share of the batch (``n_rank · world_size / n_batch``), so the averaged
  gradient is the gradient of the global batch's mean loss even when the batch does not
  split evenly (a process with no patch in the last batch runs one patch at weight 0);
* evaluate on shards and gather the probabilities (:meth:`World.gather_rows`), so every
  process computes the same validation metrics and takes the same early-stopping decision;
  training loss and accuracy are summed over the processes (``all_reduce``).

Batch norm: on GPUs the BN layers become ``SyncBatchNorm`` for the run (batch statistics over
the global batch, as one process; put back to plain BN at the end). On the CPU torch has no
SyncBatchNorm, so each process normalises with its own share's statistics and the running
statistics kept are rank 0's (DDP broadcasts rank 0's buffers before every forward; the
loop does it again before evaluating) — like training with a BN batch of ``batch_size /
world_size``: a BN model trained on the CPU with several processes is a different model, not
the one-process one within a float tolerance (gap-cnn, 2 processes, batch 8, 10 steps:
weights up to 0.5 relative apart). With SyncBatchNorm, the one padding patch of a process
left without a patch in the last batch (weight 0 in the loss) still enters that step's
batch statistics. Dropout masks are drawn per process, so the exact equality with one
process needs ``--dropout 0`` (tests/test_distributed_training.py does that).

Only rank 0 writes (model folder, checkpoints, JSON, progress); :func:`init_from_env`'s
caller closes the group (:meth:`World.close`) however the run ends.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from musiclens.core.errors import ParameterError

#: how long a rank waits for the others when it leaves the process group (s)
LEAVE_TIMEOUT_S = 60

if TYPE_CHECKING:
    import torch

__all__ = ["ENV_VARS", "World", "init_from_env", "launched_by_torchrun"]

#: What torchrun sets for every process (MASTER_PORT too; torch defaults it otherwise).
ENV_VARS: tuple[str, ...] = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")


def launched_by_torchrun() -> bool:
    return all(os.environ.get(k) for k in ENV_VARS)


@dataclass
class World:
    """This process's place in the run: ``rank`` of ``world_size``, its ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    _sync_bn: list[tuple[Any, str, Any]] = field(default_factory=list, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "backend": self.backend}

    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This process's strided share of a batch (or of any index array)."""
        out: np.ndarray = np.asarray(idx)[self.rank :: self.world_size]
        return out

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over the processes (the same result on every one)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return [float(v) for v in t.cpu()]

    def any(self, flag: bool) -> bool:
        """True on every process when it is True on one (e.g. a cancel)."""
        return self.sum([1.0 if flag else 0.0])[0] > 0

    def gather_rows(self, local: np.ndarray, n: int) -> np.ndarray:
        """The ``n`` rows of an array sharded by :meth:`shard` (this process holds rows
        ``rank::world_size``), put back in order on every process."""
        import torch
        import torch.distributed as dist

        per = -(-n // self.world_size)
        pad = np.zeros((per, *local.shape[1:]), dtype=local.dtype)
        pad[: len(local)] = local
        mine = torch.from_numpy(pad).to(self.device)
        parts = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(parts, mine)
        out = np.zeros((n, *local.shape[1:]), dtype=local.dtype)
        for r, part in enumerate(parts):
            rows = out[r :: self.world_size]
            rows[...] = part.cpu().numpy()[: len(rows)]
        return out

    def broadcast_buffers(self, net: torch.nn.Module) -> None:
        """Rank 0's buffers (BN running statistics, the input norm) to every process."""
        import torch.distributed as dist

        for buf in net.buffers():
            dist.broadcast(buf, 0)

    def wrap(self, net: torch.nn.Module) -> torch.nn.Module:
        """``net`` inside ``DistributedDataParallel`` (GPUs: its BN layers synchronised for
        the run, see :meth:`unwrap`)."""
        from torch.nn.parallel import DistributedDataParallel

        if self.device.type == "cuda":
            self._sync_batchnorm(net)
            return DistributedDataParallel(net, device_ids=[self.device.index], output_device=self.device.index)
        return DistributedDataParallel(net)

    def unwrap(self) -> None:
        """Put the plain BN layers back (they share their parameters and running statistics
        with the SyncBatchNorm layers that replaced them, so they hold the trained values)."""
        for parent, name, bn in self._sync_bn:
            setattr(parent, name, bn)
        self._sync_bn.clear()

    def _sync_batchnorm(self, net: torch.nn.Module) -> None:
        import torch

        for parent in list(net.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(
                    child, torch.nn.SyncBatchNorm
                ):
                    sync = torch.nn.SyncBatchNorm.convert_sync_batchnorm(child)  # type: ignore[no-untyped-call]
                    sync.train(child.training)
                    self._sync_bn.append((parent, name, child))
                    setattr(parent, name, sync)

    def close(self) -> None:
        """Leave the process group (idempotent; after an error too)."""
        import torch.distributed as dist

        self.unwrap()
        if dist.is_available() and dist.is_initialized():
            if dist.get_backend() == "gloo":
                # leave together: a rank that tears gloo down while rank 0 is still saving
                # aborted now and then ("terminate called without an active exception");
                # bounded, so a rank left alone by a failed peer still gets out
                with contextlib.suppress(Exception):
                    dist.monitored_barrier(timeout=datetime.timedelta(seconds=LEAVE_TIMEOUT_S))
            dist.destroy_process_group()


def init_from_env(device: str | None = "auto") -> World:
    """Join the process group torchrun describes in the environment and return this
    process's :class:`World`. ``device``: the run's ``--device`` (auto: the GPUs when there
    are any); on GPUs each process takes ``cuda:LOCAL_RANK``.

    Raises :class:`~musiclens.core.errors.ParameterError` (one line) outside torchrun."""
    missing = [k for k in ENV_VARS if not os.environ.get(k)]
    if missing:
        raise ParameterError(
            f"--distributed needs the environment torchrun sets ({', '.join(missing)} missing); "
            "launch it as: torchrun --nproc_per_node N -m musiclens train ... --distributed"
        )
    try:
        rank, world_size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except ValueError:
        raise ParameterError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (torchrun sets them)") from None
    import torch
    import torch.distributed as dist

    from musiclens.core.device import resolve_device

    if not dist.is_available():
        raise ParameterError(f"--distributed: this torch {torch.__version__} has no torch.distributed")
    dev = resolve_device(device)
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ParameterError(
                f"--distributed: LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} GPU(s); "
                "start at most one process per GPU (--nproc_per_node)"
            )
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world_size)
    return World(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, backend=backend)
