"""The observation holds the state the env's own rules act on (obs["rules"]), so the repeat limit
and the diversity bonus are functions of what the policy sees."""
from __future__ import annotations

import torch

from envs import DEFAULT_SPEC, EnvConfig, VecTradingEnv, synthetic_bars
from envs.spec import RULE_FEATURES

SPEC = DEFAULT_SPEC
STREAK, DISTINCT, SINCE = (RULE_FEATURES.index(n) for n in ("repeat_streak", "distinct_actions",
                                                            "steps_since_trade"))


def test_rule_features_along_a_scripted_sequence() -> None:
    env = VecTradingEnv(["A"], 1, EnvConfig(episode_length=40, max_consecutive_actions=3, obs_noise=0.0),
                        markets={"A": synthetic_bars("A", 500)}, seed=0)
    obs, _ = env.reset(seed=0)
    assert obs["rules"].shape == (1, len(RULE_FEATURES) + SPEC.num_actions)
    assert (obs["rules"] == 0).all()  # episode start: no streak, no actions, no previous action
    a = SPEC.action_id
    # action sent -> (streak / limit, distinct executed actions / A, steps since a trade / 20, executed)
    script = [
        ("BUY_LARGE", 1 / 3, 1 / 7, 0.0, "BUY_LARGE"),
        ("ADD_TO_POSITION", 1 / 3, 2 / 7, 0.0, "ADD_TO_POSITION"),
        ("ADD_TO_POSITION", 2 / 3, 2 / 7, 0.0, "ADD_TO_POSITION"),
        ("ADD_TO_POSITION", 3 / 3, 2 / 7, 0.0, "ADD_TO_POSITION"),
        ("ADD_TO_POSITION", 4 / 3, 3 / 7, 1 / 20, "HOLD"),  # the 4th in a row: repeat-limited
        ("HOLD", 0.0, 3 / 7, 2 / 20, "HOLD"),  # hold streaks are not limited, so not shown
        ("SELL_ALL", 1 / 3, 4 / 7, 0.0, "SELL_ALL"),
    ]
    for sent, streak, distinct, since, executed in script:
        obs, _, _, _, info = env.step(torch.tensor([a(sent)]))
        assert int(info["executed_action"][0]) == a(executed), sent
        rules = obs["rules"][0]
        torch.testing.assert_close(rules[:len(RULE_FEATURES)], torch.tensor([streak, distinct, since]))
        previous = rules[len(RULE_FEATURES):]
        assert previous.sum() == 1 and previous[a(sent)] == 1  # the policy's previous action
