"""Data-parallel training (trainers.run.distributed) with two gloo processes on the CPU: the ranks hold
the same weights after every update, count a global batch, take the KL early-stop decision
together although their own KLs disagree, stop together on a signal that reaches one of them,
resume under torchrun with each rank's own accounts, and a two-rank checkpoint resumes in one
process as rank 0."""
from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.multiprocessing as mp

import ppo_core.learner
from configs.train import TrainConfig, build
from envs import synthetic_bars
from models import read_checkpoint_meta
from trainers import checkpoints
from trainers.run import distributed
from trainers.run.distributed import LaunchError, World
from trainers.run.build import open_session
from trainers.run.session import Session

WORLD = 2
NUM_STEPS, ENVS, SYMBOLS = 8, 2, ["AAA", "BBB"]
LOCAL_BATCH = NUM_STEPS * ENVS * len(SYMBOLS)
BATCH = LOCAL_BATCH * WORLD  # account-steps per iteration over both ranks
ITERATIONS, STOP_AFTER = 4, 2
TARGET_KL = 1e-9  # every epoch's KL on rank 0 is above it, rank 1's is made 0 (see _worker)


def tiny_args(data: Path, run_dir: Path) -> list[str]:
    return [
        "--symbols", ",".join(SYMBOLS), "--data-dir", str(data), "--run-dir", str(run_dir),
        "--envs-per-symbol", str(ENVS), "--seed", "5", "--device", "cpu",
        "--total-steps", str(ITERATIONS * BATCH),
        "--set", "run.encoder_preset=custom", "--set", "model.encoder.n_layers=1",
        "--set", "model.encoder.d_model=16", "--set", "model.encoder.n_heads=2",
        "--set", "model.encoder.d_ff=32", "--set", "model.encoder.out_dim=16",
        "--set", "model.encoder.dropout=0.0", "--set", "model.actor_hidden=[16]",
        "--set", "model.critic_hidden=[16]", "--set", f"run.num_steps={NUM_STEPS}",
        "--set", "env.episode_length=12", "--set", "run.checkpoint_every=1", "--set", "run.torch_threads=1",
        "--set", "ppo.update_epochs=3", "--set", "ppo.num_minibatches=2",
        "--set", f"ppo.target_kl={TARGET_KL}",
        "--set", "run.eval_every=1000000",  # validation once, at the end: rank 0's verdict reaches rank 1
    ]


def write_markets(data: Path, bars: int = 400) -> None:
    """Short generated markets as files: building and validating them takes a fraction of a second."""
    data.mkdir(parents=True)
    for symbol in SYMBOLS:
        b = synthetic_bars(symbol, bars)
        pq.write_table(pa.table({"timestamp": pa.array(b.timestamps.astype("datetime64[ns]")), "open": b.open,
                                 "high": b.high, "low": b.low, "close": b.close, "volume": b.volume}),
                       data / f"{symbol}.parquet")


def flat_params(session: Session) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in session.policy.parameters()]).clone()


def _worker(rank: int, port: int, argv: list[str], out: str, stop_after: int) -> None:
    """One rank: trainers.ppo.main under torchrun's variables, recording every iteration. Rank 1's
    approx KL reads 0 (only the metric: its loss and gradients are untouched), so the ranks' own
    KLs fall on both sides of target_kl. Rank 0 sends itself SIGINT after iteration `stop_after`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    from trainers.ppo import main

    local_kl: list[float] = []
    loss = ppo_core.learner.ppo_loss

    def zero_kl(*args: Any, **kwargs: Any) -> Any:
        value, metrics = loss(*args, **kwargs)
        if rank == 1:
            metrics = metrics._replace(approx_kl=torch.zeros_like(metrics.approx_kl))
        local_kl.append(float(metrics.approx_kl))
        return value, metrics

    ppo_core.learner.ppo_loss = zero_kl
    records: list[dict[str, Any]] = []
    iterate = Session.iterate

    def recording_iterate(self: Session, *args: Any, **kwargs: Any) -> Any:
        local_kl.clear()
        obs_before = self.obs["technical"].clone()
        result = iterate(self, *args, **kwargs)
        records.append({
            "params": flat_params(self), "epochs_run": result.update.epochs_run,
            "stopped_early": result.update.stopped_early, "local_kl": max(local_kl),
            "kl": result.update.steps.approx_kl, "local_batch": self.buffer.batch_size,
            "batch": self.batch_size, "global_step": self.global_step,
            "obs_before": obs_before, "obs_after": self.obs["technical"].clone(),
        })
        if rank == 0 and self.iteration == stop_after:
            os.kill(os.getpid(), signal.SIGINT)  # rank 1 gets no signal
        return result

    Session.iterate = recording_iterate
    code = main(argv)
    torch.save({"code": code, "records": records}, Path(out) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(argv: list[str], out: Path, stop_after: int = -1, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Run two ranks (gloo) and return what each recorded; a failure or a hang (ranks waiting on
    collectives that do not match) fails the test."""
    out.mkdir(parents=True)
    # the ranks fork from a server that imported torch and the trainer once (torch._dynamo: Adam's
    # constructor imports it, 2-4 s); by module name, from the working directory (python 3.11's
    # forkserver ignores sys.path): elsewhere each rank imports them itself, only slower
    multiprocessing.set_forkserver_preload(["trainers.ppo", "torch._dynamo"])
    context = mp.start_processes(_worker, args=(_free_port(), argv, str(out), stop_after), nprocs=WORLD,
                                 join=False, start_method="forkserver")
    deadline = time.monotonic() + timeout
    try:
        while not context.join(timeout=1.0):
            if time.monotonic() > deadline:
                pytest.fail(f"the ranks did not finish within {timeout:.0f} s (mismatched collectives?)")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A two-rank run that a SIGINT to rank 0 stops after STOP_AFTER iterations, its resume under
    torchrun to ITERATIONS, and the same run without a stop: run dirs and per-rank records."""
    root = tmp_path_factory.mktemp("distributed")
    write_markets(root / "data")
    args = tiny_args(root / "data", root / "run")
    stopped = launch(args, root / "stopped", stop_after=STOP_AFTER)
    stopped_state = checkpoints.load_state(checkpoints.latest(root / "run"))
    resumed = launch(["--resume", str(root / "run"), *args], root / "resumed")
    straight = launch(tiny_args(root / "data", root / "straight"), root / "straight_out")
    return {"run_dir": root / "run", "stopped": stopped, "stopped_state": stopped_state, "resumed": resumed,
            "straight_dir": root / "straight", "straight": straight}


@pytest.mark.slow
def test_ranks_share_weights_and_the_early_stop_and_count_a_global_batch(runs):
    records = [stopped["records"] + resumed["records"]
               for stopped, resumed in zip(runs["stopped"], runs["resumed"])]
    assert [len(r) for r in records] == [ITERATIONS, ITERATIONS]
    before = None
    for i, (a, b) in enumerate(zip(*records)):
        assert torch.equal(a["params"], b["params"]), f"iteration {i + 1}: the ranks' weights differ"
        assert before is None or not torch.equal(a["params"], before), f"iteration {i + 1} did not update"
        before = a["params"]
        # the global batch is the sum of the ranks' own batches, and global_step counts it
        assert a["batch"] == b["batch"] == a["local_batch"] + b["local_batch"] == BATCH
        assert a["global_step"] == b["global_step"] == (i + 1) * BATCH
        # rank 0's own KL alone would stop it after the first epoch and rank 1's alone never would:
        # both take the decision on their mean
        assert a["local_kl"] > TARGET_KL >= b["local_kl"] == 0.0
        assert a["kl"] == b["kl"] > TARGET_KL
        assert (a["epochs_run"], a["stopped_early"]) == (b["epochs_run"], b["stopped_early"]) == (1, True)
        # each rank steps its own accounts, from its own seed
        assert not torch.equal(a["obs_after"], b["obs_after"])


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_both_and_the_run_resumes_exactly_under_torchrun(runs):
    assert [r["code"] for r in runs["stopped"]] == [130, 130]  # rank 1 stopped at rank 0's iteration
    assert [len(r["records"]) for r in runs["stopped"]] == [STOP_AFTER, STOP_AFTER]
    state = runs["stopped_state"]
    assert state["global_step"] == STOP_AFTER * BATCH
    assert state["world_size"] == WORLD and len(state["ranks"]) == WORLD - 1
    assert not torch.equal(state["env"]["accounts"]["t"], state["ranks"][0]["env"]["accounts"]["t"])

    assert [r["code"] for r in runs["resumed"]] == [0, 0]
    for stopped, resumed in zip(runs["stopped"], runs["resumed"]):
        assert torch.equal(resumed["records"][0]["obs_before"], stopped["records"][-1]["obs_after"])
    run_dir = runs["run_dir"]
    assert checkpoints.latest(run_dir).step == ITERATIONS * BATCH
    # the end's validation ran on rank 0 alone; its verdict (keep this checkpoint) reached rank 1 too
    assert [entry.step for entry in checkpoints.best(run_dir)] == [ITERATIONS * BATCH]
    # the same weights and accounts as the run that was never stopped, on both ranks
    assert [r["code"] for r in runs["straight"]] == [0, 0]
    for straight, resumed in zip(runs["straight"], runs["resumed"]):
        assert torch.equal(straight["records"][-1]["params"], resumed["records"][-1]["params"])
        assert torch.equal(straight["records"][-1]["obs_after"], resumed["records"][-1]["obs_after"])
    ours = checkpoints.load_state(checkpoints.latest(run_dir))
    theirs = checkpoints.load_state(checkpoints.latest(runs["straight_dir"]))
    for part, reference in zip([ours, *ours["ranks"]], [theirs, *theirs["ranks"]]):
        for key, value in reference["env"]["accounts"].items():
            assert torch.equal(part["env"]["accounts"][key], value), key


@pytest.mark.slow
def test_a_two_rank_checkpoint_resumes_in_one_process_as_rank_0(runs, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(runs["run_dir"], run_dir)
    rank0 = runs["resumed"][0]["records"][-1]
    config = build(TrainConfig, read_checkpoint_meta(checkpoints.latest(run_dir).weights).config)
    saved = checkpoints.load_state(checkpoints.latest(run_dir))
    session = open_session(config, run_dir, resume=True)
    try:
        assert not session.world.active and session.batch_size == LOCAL_BATCH
        assert session.global_step == ITERATIONS * BATCH
        assert session.iteration == ITERATIONS * BATCH // LOCAL_BATCH  # recounted for one process's batch
        assert torch.equal(flat_params(session), rank0["params"])
        for key, value in saved["env"]["accounts"].items():  # rank 0's accounts, not rank 1's
            assert torch.equal(session.env.accounts.state_dict()[key].cpu(), value), key
        assert torch.equal(session.obs["technical"], rank0["obs_after"])
        session.iterate()
        assert session.global_step == ITERATIONS * BATCH + LOCAL_BATCH
    finally:
        session.close()


def test_without_torchrun_the_world_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    world = distributed.start("cpu")
    assert world == World() and not world.active and world.is_main and world.seed(7) == 7
    value = torch.tensor([1.0, 2.0])
    world.mean_(value)
    assert torch.equal(value, torch.tensor([1.0, 2.0])) and world.any(True) and not world.any(False)


def test_each_rank_seeds_its_own_streams():
    seeds = [World(rank=rank, size=4).seed(7) for rank in range(4)]
    assert seeds[0] == 7 and len(set(seeds)) == 4 and all(0 <= s < 2**63 for s in seeds)
    assert World(rank=1, size=4).seed(8) != seeds[1]


@pytest.mark.parametrize("variables, device, cuda_count, message", [
    ({"WORLD_SIZE": "2"}, "cpu", 0, "RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not: start"),
    ({"RANK": "1", "LOCAL_RANK": "1"}, "cuda", 1, "LOCAL_RANK 1, but torch sees 1 GPU on this node"),
    ({"RANK": "0", "LOCAL_RANK": "0"}, "cuda:1", 2, "pins one GPU; under torchrun each process trains on"),
    ({"RANK": "0", "LOCAL_RANK": "0"}, "cuda", 0, "run.device: 'cuda' requested but torch sees no CUDA"),
], ids=["no-torchrun", "more-ranks-than-gpus", "pinned-gpu", "no-gpu"])
def test_launch_errors_say_what_to_change(monkeypatch, variables, device, cuda_count, message):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    if "RANK" in variables:
        monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
        monkeypatch.setenv("MASTER_PORT", "1")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_count)
    with pytest.raises(LaunchError, match=message):
        distributed.start(device)
