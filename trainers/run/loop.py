"""The training loop: one iteration (collect a rollout from every account -> GAE -> PPO update,
ppo_core.ppo_iteration) -> one host read for logging -> validation when due (best-k checkpoints,
early stopping) -> checkpoint, until the budget is spent, a stop is requested or training fails.
Under torchrun every process runs this loop on its own accounts (trainers.run.distributed): the
decisions that end or save an iteration are the same on every rank."""
from __future__ import annotations

import contextlib
import signal
import sys
from typing import Any, Iterator

from ppo_core import IterationResult, NonFiniteLossError
from trainers.monitoring.alerts import iteration_signals
from trainers.monitoring.console import IterationMetrics
from trainers import checkpoints
from trainers.run.session import Session

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


class StopRequest:
    """First Ctrl-C or SIGTERM asks the loop to checkpoint and stop; a second Ctrl-C aborts, unless
    `repeat_aborts` is False: under torchrun the launcher passes a Ctrl-C on to workers that the
    terminal has already signalled (and kills those still running 30 s later)."""

    def __init__(self, repeat_aborts: bool = True, announce: bool = True) -> None:
        self.requested = False
        self.signal_name = ""
        self.repeat_aborts = repeat_aborts
        self.announce = announce
        """say so on stderr (rank 0 alone under torchrun)"""

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and self.repeat_aborts and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        if self.announce:
            abort = " (Ctrl-C again to abort without saving)" if self.repeat_aborts else ""
            print(f"\n{self.signal_name}: finishing this iteration, then saving a checkpoint{abort}",
                  file=sys.stderr)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def train(session: Session, stop: StopRequest | None = None) -> int:
    """Run PPO until `run.total_steps` account-steps or early stopping; returns a process exit code.
    `stop` is set by SIGINT/SIGTERM (or by a caller) and checked once per iteration."""
    stop = stop or StopRequest(repeat_aborts=not session.world.active, announce=session.world.is_main)
    if session.early_stop is not None:
        session.log.message(f"{session.run_dir} was stopped early at step {session.early_stop['step']:,} "
                            f"({session.early_stop['reason']}); resume with --total-steps above "
                            f"{session.early_stop['total_steps']:,} to train on", style="bold yellow")
        return EXIT_OK
    announce(session)
    with stop.installed():
        while session.iteration < session.num_iterations:
            # collect -> GAE -> update -> statistics, all accounts of all symbols together
            try:
                result = session.iterate()
            except NonFiniteLossError as err:
                session.fail(f"iteration {session.iteration + 1}: {err}. Training stopped")
                return EXIT_FAILED
            exit_code = finish_iteration(session, result, stop)
            if exit_code is not None:
                return exit_code
    top = session.best_k.best[0] if session.best_k.best else None
    best = (f"; best by mean val Sharpe: step {top.step:,} ({top.score:+.3f}), which trainers.evaluate uses"
            if top is not None else "")
    session.log.message(f"done: {session.global_step:,} account-steps; weights in "
                        f"{checkpoints.latest(session.run_dir).weights}{best}", style="bold green")
    return EXIT_OK


def announce(session: Session) -> None:
    """The run's size on the console; the progress bar's total."""
    cfg, total = session.config, session.num_iterations * session.batch_size
    session.log.set_total(total)
    processes = f" x {session.world.size} processes" if session.world.active else ""
    session.log.message(f"{session.num_iterations} iterations x {session.batch_size:,} account-steps "
                        f"({len(cfg.run.symbols)} symbols x {cfg.run.envs_per_symbol} accounts x "
                        f"{cfg.run.num_steps} steps{processes}); run dir {session.run_dir}")


def finish_iteration(session: Session, result: IterationResult, stop: StopRequest) -> int | None:
    """After an update: statistics, validation when due, alerts, logging and the checkpoint; the
    exit code when the run must end here, else None."""
    log = session.log
    rollout = session.stats.summary()  # the rollout's one host read
    if result.collapse is not None:
        session.save()
        session.fail(str(result.collapse))
        return EXIT_FAILED

    # validate every run.eval_every steps and at the end: a best-k score keeps its checkpoint
    verdict = session.validate() if session.validation_due() else None
    alerts = session.alerts.observe(iteration_signals(
        rollout, result.update, result.entropy, session.global_step, session.num_iterations * session.batch_size))
    metrics = IterationMetrics(rollout, result.update, result.entropy, session.alerts.scalars(),
                               log.steps_per_second(session.global_step))
    log.iteration(session.iteration, session.global_step, metrics, [alert.text for alert in alerts])
    halt = session.alerts.halt_reason()  # alerts.halt_on: stop, keeping this iteration's weights
    if halt is not None:
        session.save()
        session.fail(halt)
        return EXIT_FAILED
    if verdict is not None and verdict.stop:
        session.stop_early(verdict.stop)  # writes the final checkpoint
        return EXIT_OK

    # checkpoint every K iterations, at the end, when asked to stop and for a best-k score
    last = session.iteration == session.num_iterations
    kept = verdict is not None and verdict.kept
    stopping = session.world.any(stop.requested)  # under torchrun: a signal to any rank stops all
    if last or stopping or kept or session.iteration % session.config.run.checkpoint_every == 0:
        session.save()
    if stopping:
        signal_name = stop.signal_name or "a signal to another rank"
        if session.run_dir.is_dir():  # else Session.save said why nothing was written
            log.message(f"{signal_name}: checkpoint saved at step {session.global_step:,}; "
                        f"continue with: python -m trainers.ppo --resume {session.run_dir}", style="bold yellow")
        return EXIT_INTERRUPTED
    return None
