"""Collapse alerts: each fires on a scripted trajectory made to trigger it and stays quiet on one
that should not; halting; resume state; and a real tiny trainer run that logs `alerts/*`."""
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from configs.loader import ConfigError
from configs.train import DEFAULT_CONFIG, resolve
from trainers import checkpoints
from configs.alerts import ALERT_NAMES, AlertConfig
from trainers.monitoring.alerts import CollapseAlerts, IterationSignals
from trainers.ppo import main
from trainers.monitoring.rollout_stats import SymbolActions

SYMBOLS = ["AAA", "BBB"]
ACTIONS = ["HOLD", "BUY_SMALL", "BUY_MEDIUM", "BUY_LARGE", "SELL_PARTIAL", "SELL_ALL", "ADD_TO_POSITION"]
STEPS = 1024       # account-steps per symbol per iteration: the default 2048 window holds two
ITERATION = 4096   # account-steps per iteration (global_step advance)
HEALTHY = [0.4, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]


def counts(*mixes: list[float]) -> np.ndarray:
    """(S, A) counts from one share list per symbol (one list: every symbol the same)."""
    rows = [mixes[0]] * len(SYMBOLS) if len(mixes) == 1 else list(mixes)
    return np.array(rows) * STEPS


def signals(iteration: int, *, policy: np.ndarray | None = None, executed: np.ndarray | None = None,
            entropy: float = 1.2, repeat: float = 16.0, episodes: float = 8.0, guard: int = 0,
            total_steps: int = 100 * ITERATION) -> IterationSignals:
    """Iteration `iteration` (1-based) of a run: healthy unless told otherwise; episodes of 256 steps."""
    executed = counts(HEALTHY) if executed is None else executed
    return IterationSignals(
        global_step=iteration * ITERATION, total_steps=total_steps,
        actions=SymbolActions(executed if policy is None else policy, executed), entropy=entropy,
        repeat_limit_events=repeat, episodes=episodes, episode_steps=256.0 * episodes, guard_triggers=guard)


def detector(**config) -> CollapseAlerts:
    return CollapseAlerts(AlertConfig(**config), SYMBOLS, ACTIONS, hold_actions=[0])


def run(alerts: CollapseAlerts, trajectory: list[IterationSignals]) -> list[list[str]]:
    """The alert texts that are on after each iteration."""
    return [[alert.text for alert in alerts.observe(s)] for s in trajectory]


def names_on(alerts: CollapseAlerts) -> set[str]:
    return {alert.name for alert in alerts.active}


def test_a_healthy_run_raises_nothing():
    alerts = detector()
    assert run(alerts, [signals(i) for i in range(1, 60)]) == [[]] * 59
    assert set(alerts.scalars().values()) == {0.0}
    assert set(alerts.scalars()) == {f"alerts/{n}{s}" for n in ALERT_NAMES for s in ("", "_active")}


def test_action_share_fires_on_a_policy_stuck_on_one_action_once_the_window_holds_it():
    stuck = counts(HEALTHY, [0.0, 0.0, 0.0, 0.0, 0.04, 0.04, 0.92])  # BBB's policy: ADD 92 %
    alerts = detector()
    texts = run(alerts, [signals(1), signals(2, policy=stuck), signals(3, policy=stuck)])
    # the 2048-step window first holds one healthy and one stuck iteration (ADD 51 %), then two
    assert texts[:2] == [[], []]
    assert texts[2] == ["BBB policy ADD_TO_POSITION 92%>80%"]
    assert alerts.scalars()["alerts/action_share_active"] == 1.0


def test_action_share_names_executed_hold_and_counts_crowded_symbols():
    idle = counts([0.86, 0.02, 0.02, 0.02, 0.02, 0.02, 0.04], [0.9] + [0.1 / 6] * 6)
    alerts = detector()
    texts = run(alerts, [signals(i, executed=idle, policy=counts(HEALTHY)) for i in (1, 2)])
    assert texts[-1] == ["BBB executed HOLD 90%>80% (+1 symbols)"]


def test_action_share_quiet_at_the_repeat_limits_cap():
    capped = counts([0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.75])  # ADD as often as the repeat limit lets it
    alerts = detector()
    run(alerts, [signals(i, executed=capped, policy=capped) for i in range(1, 5)])
    assert "action_share" not in names_on(alerts)


def test_entropy_floor_drops_past_mid_run():
    alerts = detector()
    total = 10 * ITERATION
    texts = run(alerts, [signals(2, entropy=0.29, total_steps=total),   # early: floor 0.3
                         signals(4, entropy=0.31, total_steps=total),
                         signals(6, entropy=0.25, total_steps=total),   # late: floor 0.2
                         signals(8, entropy=0.19, total_steps=total)])
    assert texts == [["entropy 0.290<0.3"], [], [], ["entropy 0.190<0.2"]]


def test_repeat_limit_per_episode():
    # 2 symbols x 1024 steps per iteration, episodes of 256 steps: events / 8 per episode
    alerts = detector()
    texts = run(alerts, [signals(1, repeat=320.0), signals(2, repeat=320.0),   # 40 / episode
                         signals(3, repeat=480.0), signals(4, repeat=480.0)])  # 60 / episode
    assert texts[:2] == [[], []]
    assert texts[3] == ["repeat 60/ep>50"]
    # before any episode finished there is no episode length to scale by
    quiet = detector()
    assert run(quiet, [signals(1, repeat=5000.0, episodes=0.0)]) == [[]]


def test_guard_triggers_per_window():
    every = detector()  # a trigger every 4096 steps: 3 within 10k steps
    texts = run(every, [signals(i, guard=i) for i in range(1, 5)])
    assert texts[:2] == [[], []]
    assert texts[2] == ["guard 3/10k>2"] and texts[3] == ["guard 3/10k>2"]
    alternate = detector()  # every other iteration: at most 2 within 10k steps
    assert run(alternate, [signals(i, guard=(i + 1) // 2) for i in range(1, 12)]) == [[]] * 11


def test_trade_rate_floor_per_symbol():
    still = counts(HEALTHY, [0.995, 0.005, 0.0, 0.0, 0.0, 0.0, 0.0])
    slow = counts(HEALTHY, [0.98, 0.01, 0.0, 0.0, 0.01, 0.0, 0.0])
    alerts = detector()
    run(alerts, [signals(i, executed=still) for i in (1, 2)])
    assert [a.text for a in alerts.active if a.name == "trade_rate"] == ["BBB trades 0.005<0.01"]
    quiet = detector()
    run(quiet, [signals(i, executed=slow) for i in (1, 2)])
    assert names_on(quiet) == {"action_share"}  # HOLD 98 %, but 0.02 fills per step


def test_halt_only_for_alerts_in_halt_on_after_halt_after_iterations():
    alerts = detector(halt_on=("entropy",), halt_after=3)
    reasons = []
    for i, entropy in enumerate([0.1, 0.1, 1.0, 0.1, 0.1, 0.1], start=1):
        alerts.observe(signals(i, entropy=entropy, guard=i))  # guard_triggers is on too, not halting
        reasons.append(alerts.halt_reason())
    assert reasons[:5] == [None] * 5  # the streak restarts after iteration 3
    assert reasons[5].startswith("collapse alert entropy on for 3 iterations in a row: entropy 0.100<0.3;")
    assert alerts.scalars()["alerts/entropy"] == 5.0 and alerts.scalars()["alerts/guard_triggers"] == 4.0
    never = detector()
    for i in range(1, 6):
        never.observe(signals(i, entropy=0.0))
    assert never.halt_reason() is None


def test_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    drifting = [counts([0.5 + 0.04 * i] + [(0.5 - 0.04 * i) / 6] * 6) for i in range(1, 11)]  # HOLD grows
    trajectory = [signals(i, entropy=0.25 if i % 3 else 1.0, guard=i, repeat=100.0 * i,
                          executed=drifting[i - 1]) for i in range(1, 11)]
    straight = detector(halt_on=("entropy",))
    expected = run(straight, trajectory)
    first, second = detector(halt_on=("entropy",)), detector(halt_on=("entropy",))
    assert run(first, trajectory[:5]) == expected[:5]
    torch.save(first.state_dict(), tmp_path / "state.pt")
    second.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert run(second, trajectory[5:]) == expected[5:]
    assert second.scalars() == straight.scalars()


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"alerts\.halt_on: unknown alert \['entropi'\]"):
        resolve(DEFAULT_CONFIG, ["alerts.halt_on=['entropi']"])
    with pytest.raises(ConfigError, match=r"alerts\.action_share"):
        resolve(DEFAULT_CONFIG, ["alerts.action_share=1.5"])
    assert resolve(DEFAULT_CONFIG).alerts == AlertConfig()


TINY = ["--symbols", "AAA,BBB", "--envs-per-symbol", "2", "--seed", "3", "--device", "cpu",
        "--set", "run.encoder_preset=custom", "--set", "model.encoder.n_layers=1",
        "--set", "model.encoder.d_model=16", "--set", "model.encoder.n_heads=2",
        "--set", "model.encoder.d_ff=32", "--set", "model.encoder.out_dim=16",
        "--set", "model.actor_hidden=[32]", "--set", "model.critic_hidden=[32]",
        "--set", "run.num_steps=32", "--set", "env.episode_length=40", "--set", "run.torch_threads=1"]
BATCH = 2 * 2 * 32


def tiny(tmp_path: Path, iterations: int, *overrides: str) -> list[str]:
    data = tmp_path / "data"  # an empty folder: both symbols trade synthetic markets
    data.mkdir(exist_ok=True)
    sets = [arg for key in overrides for arg in ("--set", key)]
    return TINY + sets + ["--data-dir", str(data), "--run-dir", str(tmp_path / "run"),
                          "--total-steps", str(iterations * BATCH)]


def scalars(run_dir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.slow
def test_a_real_tiny_run_logs_alert_scalars(tmp_path):
    assert main(tiny(tmp_path, 3)) == 0
    logged = scalars(tmp_path / "run")
    for name in ALERT_NAMES:
        assert len(logged[f"alerts/{name}"]) == 3 and set(logged[f"alerts/{name}_active"]) <= {0.0, 1.0}


def test_a_real_run_halts_on_an_alert_of_halt_on_with_a_checkpoint(tmp_path, capsys):
    code = main(tiny(tmp_path, 6, "alerts.entropy_min=10.0", "alerts.entropy_min_late=10.0",
                     "alerts.halt_on=['entropy']", "alerts.halt_after=2"))
    assert code == 1
    assert checkpoints.latest(tmp_path / "run").step == 2 * BATCH
    out = capsys.readouterr().out
    assert "ALERT entropy" in out and "collapse alert entropy on for 2 iterations in a row" in out
    assert scalars(tmp_path / "run")["alerts/entropy"] == [1.0, 2.0]
