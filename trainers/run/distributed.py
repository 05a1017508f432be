"""Data-parallel training under torchrun: one process per device, NCCL on CUDA, gloo on CPU.

torchrun sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in every process it starts;
`start` reads them and joins the process group. Without WORLD_SIZE it returns the single-process
World, whose collectives are identities, so a plain `python -m trainers.ppo` runs as before. Each
rank steps its own accounts from its own seed (`World.seed`); PPOLearner averages gradients and the
update's metrics with `World.mean_`, so every rank holds the same weights and takes the same
KL early-stop decision; only rank 0 writes (checkpoints, TensorBoard, console).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ppo_core import resolve_device

T = TypeVar("T")
TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""what torchrun sets besides WORLD_SIZE; init_process_group's env:// rendezvous reads them"""


class LaunchError(RuntimeError):
    """A distributed launch that cannot work; the message says what to change."""


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes; the default is a single process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """this rank's training device (cuda:LOCAL_RANK or cpu); unused by a single process"""
    active: bool = False
    """a process group is initialised (under torchrun); False: every collective is an identity"""

    @property
    def is_main(self) -> bool:
        """Rank 0, the one process that writes checkpoints, logs and TensorBoard."""
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """The seed of this rank's own streams (env starts, observation noise, action sampling,
        minibatch order): `seed` itself on rank 0, so rank 0 draws what a single process draws; on
        rank r > 0 a 63-bit seed that numpy's SeedSequence derives from (seed, r)."""
        if self.rank == 0:
            return seed
        state = np.random.SeedSequence([seed % 2**64, self.rank]).generate_state(1, np.uint64)
        return int(state[0]) >> 1

    # ---- collectives: every rank must call them in the same order -----------------------------
    def mean_(self, tensor: Tensor) -> None:
        """Average `tensor` in place over every rank."""
        if self.active:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor.div_(self.size)

    def sum_(self, tensors: Sequence[Tensor]) -> None:
        """Sum each float tensor in place over every rank, in one all-reduce of their concatenation."""
        if not self.active or not tensors:
            return
        flat = torch.cat([t.reshape(-1).float() for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        for tensor, chunk in zip(tensors, flat.split([t.numel() for t in tensors])):
            tensor.copy_(chunk.view_as(tensor))

    def any(self, flag: bool) -> bool:
        """Whether `flag` is set on any rank: a decision every rank must take together (a stop signal
        reaches the processes at slightly different times)."""
        if not self.active:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's `obj` (picklable) on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self._object_device)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's `obj` (picklable, tensors on the CPU), in rank order, on every rank."""
        if not self.active:
            return [obj]
        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast_parameters(self, module: nn.Module) -> None:
        """Overwrite every parameter and buffer with rank 0's, so all ranks start from the same weights."""
        if self.active:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)

    def barrier(self) -> None:
        if self.active:
            dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def main_first(self, fn: Callable[[], T]) -> T:
        """fn() on rank 0, then on the other ranks (rank 0 may repair files they then read). An
        exception on rank 0 is raised on every rank, so none of them waits for it."""
        if not self.active:
            return fn()
        if self.is_main:
            try:
                result = fn()
            except Exception as err:
                self.broadcast_object(err)
                raise
            self.broadcast_object(None)
            return result
        error = self.broadcast_object(None)
        if error is not None:
            raise error
        return fn()

    def close(self) -> None:
        """Leave the process group (a no-op for a single process)."""
        if self.active and dist.is_initialized():
            dist.destroy_process_group()

    @property
    def _object_device(self) -> torch.device | None:
        return self.device if self.device.type == "cuda" else None


def start(device_name: str) -> World:
    """Join torchrun's process group when WORLD_SIZE is set, else the single-process World.

    Under torchrun a CUDA device ("auto" on a machine with GPUs, or "cuda") becomes cuda:LOCAL_RANK
    with NCCL; the CPU uses gloo. LaunchError for what cannot work: WORLD_SIZE without torchrun's
    other variables, more processes on a node than GPUs, a pinned "cuda:K", a build without
    torch.distributed or NCCL, a device type other than cpu and cuda.
    """
    if "WORLD_SIZE" not in os.environ:
        return World()
    missing = [name for name in TORCHRUN_VARS if name not in os.environ]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise LaunchError(f"WORLD_SIZE is set but {', '.join(missing)} {verb} not: start data-parallel "
                          "training with torchrun (torchrun --nproc_per_node=K -m trainers.ppo ...), or "
                          "unset WORLD_SIZE for one process")
    try:
        size, rank, local_rank = (int(os.environ[name]) for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))
    except ValueError as err:
        raise LaunchError(f"WORLD_SIZE, RANK and LOCAL_RANK must be integers ({err})") from None
    if not dist.is_available():
        raise LaunchError("this torch build has no torch.distributed; data-parallel training needs it")
    device = _rank_device(device_name, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        if not dist.is_nccl_available():
            raise LaunchError("this torch build has no NCCL, which data-parallel training on CUDA uses; "
                              "train on CPU with gloo (--device cpu) or install a CUDA build with NCCL")
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=rank, world_size=size,
                            device_id=device if backend == "nccl" else None)
    return World(rank=rank, size=size, local_rank=local_rank, device=device, active=True)


def _rank_device(device_name: str, local_rank: int) -> torch.device:
    """cuda:LOCAL_RANK for a CUDA request, cpu for a CPU one; LaunchError otherwise."""
    try:
        requested = resolve_device(device_name)
    except ValueError as err:
        raise LaunchError(f"run.{err}") from None
    if requested.type == "cpu":
        return requested
    if requested.type != "cuda":
        raise LaunchError(f"run.device {device_name!r}: data-parallel training runs on cuda (NCCL) or "
                          "cpu (gloo)")
    if requested.index is not None:
        raise LaunchError(f"run.device {device_name!r} pins one GPU; under torchrun each process trains on "
                          "cuda:LOCAL_RANK: use --device cuda (or auto)")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise LaunchError(f"LOCAL_RANK {local_rank}, but torch sees {count} GPU{'s' * (count != 1)} on this "
                          f"node: start at most {count} processes per node (torchrun --nproc_per_node="
                          f"{count}), or train on CPU with --device cpu (gloo)")
    return torch.device("cuda", local_rank)


def to_cpu(obj: Any) -> Any:
    """`obj` with every tensor in its nested dicts, lists and tuples moved to the CPU (before
    gathering: a pickled CUDA tensor would unpickle onto the sender's GPU)."""
    if isinstance(obj, Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {key: to_cpu(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(to_cpu(value) for value in obj)
    return obj


def rank_part(state: dict[str, Any], rank: int) -> dict[str, Any] | None:
    """Rank `rank`'s part of a trainer state (trainers.run.session.RANK_KEYS): rank 0's is the state
    itself (so one process resumes a data-parallel checkpoint as rank 0), another's is in `ranks`;
    None when it has none."""
    if rank == 0:
        return state
    others = state.get("ranks", [])
    return others[rank - 1] if rank - 1 < len(others) else None


def world_change_note(saved: int, now: int) -> str:
    """What resuming a checkpoint of `saved` processes in `now` processes keeps and drops."""
    def span(first: int, last: int) -> str:
        return f"rank {first}" if first == last else f"ranks {first}-{last}"

    if now < saved:
        change = f"the accounts of {span(0, now - 1)} continue, those of {span(now, saved - 1)} are dropped"
    else:
        change = (f"the accounts of {span(0, saved - 1)} continue, {span(saved, now - 1)} start fresh "
                  "episodes from their own seeds")
    return (f"note: checkpoint written by {saved} process{'es' * (saved > 1)}, resumed in {now}: {change}; "
            "the step count and budget carry over, iterations are recounted for the new batch")
