"""EntropyController: schedule points, adaptive multiplier, guard boost/cooldown/halt, checkpoints."""
import pytest

from ppo_core import (AdaptiveEntropyConfig, EntropyCollapseError, EntropyConfig, EntropyController,
                      EntropyGuardConfig, EntropyScheduleConfig)

OFF_ADAPTIVE = AdaptiveEntropyConfig(enabled=False)
OFF_GUARD = EntropyGuardConfig(enabled=False)
# the training guide's stack (configs/seed_stage5.toml), which these tests were written for; the
# dataclass defaults are the trainer's lower-pressure ones
GUIDE_SCHEDULE = EntropyScheduleConfig(initial=0.08, final=0.03, floor=0.03)
GUIDE_TARGET, GUIDE_ADAPTIVE_FLOOR, GUIDE_THRESHOLD = 0.55, 0.02, 0.22


@pytest.mark.parametrize("step, expected", [
    (0, 0.08), (10_000, 0.08),           # hold
    (20_000, 0.08 - 0.25 * 0.05),        # a quarter into the decay
    (30_000, 0.055), (50_000, 0.03), (10**7, 0.03),
])
def test_hold_then_linear_schedule(step, expected):
    ctl = EntropyController(GUIDE_SCHEDULE, OFF_ADAPTIVE, OFF_GUARD)
    assert ctl.coefficient(step) == pytest.approx(expected)


def test_schedule_floor_binds_below_final_and_constant_ignores_steps():
    ctl = EntropyController(EntropyScheduleConfig(initial=0.08, final=0.0, floor=0.03),
                            OFF_ADAPTIVE, OFF_GUARD)
    assert ctl.coefficient(30_000) == pytest.approx(0.04)  # halfway: 0.08 -> 0.0
    assert ctl.coefficient(45_000) == pytest.approx(0.03)  # 0.01 raised to the floor
    const = EntropyController(EntropyScheduleConfig(kind="constant", initial=0.01))
    assert const.coefficient(0) == const.coefficient(10**6) == 0.01


def adaptive_controller(**kwargs):
    return EntropyController(EntropyScheduleConfig(kind="constant", initial=0.05),
                             AdaptiveEntropyConfig(**{"target": GUIDE_TARGET, "floor": GUIDE_ADAPTIVE_FLOOR,
                                                      **kwargs}), OFF_GUARD)


def test_adaptive_multiplier_rises_below_target_relaxes_above_and_stays_bounded():
    ctl = adaptive_controller()
    ctl.observe(1_000, 0.0)  # warm-up: nothing moves
    assert ctl.adaptive_multiplier == 1.0
    ctl.observe(5_000, 0.275)  # half the target: +0.35 * 0.5
    assert ctl.adaptive_multiplier == pytest.approx(1.175)
    assert ctl.coefficient(5_000) == pytest.approx(0.05 * 1.175)
    for step in range(6_000, 40_000, 1_000):
        ctl.observe(step, 0.0)
    assert ctl.adaptive_multiplier == pytest.approx(3.0)  # capped at max_multiplier
    ctl.observe(50_000, 0.9)
    assert ctl.adaptive_multiplier == pytest.approx(1 + 2.0 * 0.88)
    for step in range(51_000, 200_000, 1_000):
        ctl.observe(step, 0.9)
        assert 1.0 <= ctl.adaptive_multiplier <= 3.0
    assert ctl.adaptive_multiplier == pytest.approx(1.0, abs=1e-6)


def test_adaptive_floor_bounds_the_coefficient():
    ctl = EntropyController(EntropyScheduleConfig(kind="constant", initial=0.001),
                            AdaptiveEntropyConfig(floor=0.02), OFF_GUARD)
    assert ctl.coefficient(0) == pytest.approx(0.02)


def guard_controller(**kwargs):
    guard = EntropyGuardConfig(**{"threshold": GUIDE_THRESHOLD, "warmup_steps": 100, "cooldown_steps": 300,
                                  **kwargs})
    return EntropyController(EntropyScheduleConfig(kind="constant", initial=0.01), OFF_ADAPTIVE, guard)


def test_guard_boosts_cools_down_and_relaxes():
    ctl = guard_controller()
    ctl.observe(50, 0.0)  # before warm-up
    assert ctl.guard_multiplier == 1.0 and ctl.guard_triggers == 0
    ctl.observe(100, 0.1)  # trigger: x1.7, cooldown until 400
    assert ctl.guard_multiplier == pytest.approx(1.7) and ctl.guard_triggers == 1
    assert ctl.coefficient(100) == pytest.approx(0.017)
    assert ctl.state().guard_cooldown_remaining == 300
    ctl.observe(200, 0.1)  # in cooldown: no new trigger
    ctl.observe(300, 0.9)  # in cooldown: no relaxation either
    assert ctl.guard_multiplier == pytest.approx(1.7) and ctl.guard_triggers == 1
    ctl.observe(400, 0.1)  # cooldown over: 1.7 * 1.7 = 2.89
    assert ctl.guard_multiplier == pytest.approx(2.89) and ctl.guard_triggers == 2
    ctl.observe(700, 0.1)  # capped at 3.0
    assert ctl.guard_multiplier == pytest.approx(3.0)
    ctl.observe(1_000, 0.5)  # recovered: one step back per observation
    assert ctl.guard_multiplier == pytest.approx(3.0 / 1.7)
    ctl.observe(1_100, 0.5)
    ctl.observe(1_200, 0.5)
    assert ctl.guard_multiplier == 1.0


def test_guard_halts_after_patience_strikes_at_the_maximum():
    ctl = guard_controller(halt=True, patience=2, max_multiplier=2.0)
    ctl.observe(100, 0.1)    # x1.7
    ctl.observe(400, 0.1)    # -> x2.0, the maximum
    ctl.observe(700, 0.1)    # strike 1 at the maximum
    ctl.observe(1_000, 0.3)  # recovery resets the strikes and steps back to 2.0 / 1.7
    assert ctl.guard_strikes == 0 and ctl.guard_multiplier == pytest.approx(2.0 / 1.7)
    ctl.observe(1_100, 0.1)  # below the maximum: boost back to x2.0, no strike
    ctl.observe(1_400, 0.1)  # strike 1
    assert ctl.guard_strikes == 1
    with pytest.raises(EntropyCollapseError, match=r"step 1700.*0\.1000.*threshold 0\.22"):
        ctl.observe(1_700, 0.1)


def test_guard_without_halt_keeps_training_at_the_maximum():
    ctl = guard_controller(halt=False)
    for step in range(100, 10_000, 300):
        ctl.observe(step, 0.05)
    assert ctl.guard_multiplier == pytest.approx(3.0) and ctl.guard_strikes > 2


def test_state_dict_round_trip_and_entropy_config_constructor():
    ctl = EntropyController(EntropyConfig())
    for step, h in [(5_000, 0.1), (12_000, 0.15), (20_000, 0.6)]:
        ctl.observe(step, h)
    restored = EntropyController(EntropyConfig())
    restored.load_state_dict(ctl.state_dict())
    assert restored.state() == ctl.state()
    assert restored.coefficient(25_000) == ctl.coefficient(25_000)


@pytest.mark.parametrize("factory, field", [
    (lambda: EntropyScheduleConfig(kind="cosine"), "kind"),
    (lambda: EntropyScheduleConfig(hold_steps=-1), "hold_steps"),
    (lambda: AdaptiveEntropyConfig(decay=1.5), "decay"),
    (lambda: EntropyGuardConfig(boost=0.9), "boost"),
    (lambda: EntropyGuardConfig(patience=0), "patience"),
])
def test_config_validation_names_the_field(factory, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        factory()
