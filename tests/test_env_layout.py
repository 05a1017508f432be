"""AccountLayout: the one statement of the symbol-major account order (account n trades symbol n // E)."""
import pytest
import torch

from envs import AccountLayout, EnvConfig, VecTradingEnv, synthetic_bars


@pytest.mark.parametrize("symbols, per_symbol", [(1, 1), (1, 5), (3, 1), (3, 4)])
def test_indices_follow_n_div_e_and_n_mod_e(symbols: int, per_symbol: int) -> None:
    layout = AccountLayout(symbols, per_symbol)
    n = torch.arange(symbols * per_symbol)
    assert layout.num_accounts == symbols * per_symbol
    assert torch.equal(layout.symbol_of(), n // per_symbol)
    assert torch.equal(layout.role(), n % per_symbol)
    for s in range(symbols):
        assert torch.equal(n[layout.accounts_of(s)], n[n // per_symbol == s])
        assert [layout.account(s, e) for e in range(per_symbol)] == n[n // per_symbol == s].tolist()
    with pytest.raises(IndexError):
        layout.account(0, per_symbol)


def test_by_symbol_and_flat_are_inverse_views() -> None:
    layout = AccountLayout(3, 4)
    x = torch.randn(12, 5, 2)
    grouped = layout.by_symbol(x)
    assert grouped.shape == (3, 4, 5, 2)
    for n in range(12):
        assert torch.equal(grouped[n // 4, n % 4], x[n])
    assert torch.equal(layout.flat(grouped), x)
    assert grouped.data_ptr() == x.data_ptr()  # no copy
    per_symbol = torch.tensor([[10, 11], [20, 21], [30, 31]])
    assert torch.equal(layout.per_account(per_symbol), per_symbol[layout.symbol_of()])


def test_of_batch_and_bad_sizes_are_clear_errors() -> None:
    assert AccountLayout.of_batch(12, 3) == AccountLayout(3, 4)
    with pytest.raises(ValueError, match="not divisible by 5 symbols"):
        AccountLayout.of_batch(12, 5)
    with pytest.raises(ValueError, match="per_symbol >= 1"):
        AccountLayout(2, 0)


def test_env_layout_matches_its_symbols_and_tables() -> None:
    markets = {s: synthetic_bars(s, num_bars=400) for s in ("A", "B", "C")}
    env = VecTradingEnv(list(markets), 2, EnvConfig(episode_length=8, obs_noise=0.0), markets=markets, seed=0)
    assert env.layout == AccountLayout(3, 2) and env.num_envs == env.layout.num_accounts
    assert torch.equal(env._row, env.layout.symbol_of() * env.t_max)


def test_final_accounts_keep_the_ended_state_and_decision_inputs_reproduce_the_steps_observation():
    """env.final_accounts is the state an auto-reset replaced; decision_inputs of a state gives the
    observation and mask the step itself gives for it (final_obs for ended rows, obs for the rest)."""
    import torch

    from envs import EnvConfig, VecTradingEnv, synthetic_bars

    markets = {s: synthetic_bars(s, num_bars=300) for s in ("AAA", "BBB")}
    env = VecTradingEnv(list(markets), 3, EnvConfig(episode_length=7, obs_noise=0.0), markets=markets, seed=1)
    obs, _ = env.reset()
    generator = torch.Generator().manual_seed(0)
    ended_once = False
    for _ in range(20):
        actions = torch.multinomial(env.action_masks().float(), 1, generator=generator).squeeze(1)
        obs, _, terminated, truncated, info = env.step(actions)
        ended = terminated | truncated
        final_obs, final_mask = env.decision_inputs(env.final_accounts)
        assert torch.equal(env.final_accounts.equity, info["equity"])
        assert torch.equal(env.final_accounts.t, info["bar"])
        for key, value in final_obs.items():
            assert torch.equal(value, info["final_obs"][key]), key
        current_obs, current_mask = env.decision_inputs(env.accounts)
        assert torch.equal(current_mask, env.action_masks())
        for key, value in current_obs.items():
            assert torch.equal(value, obs[key]), key
        if ended.any():
            ended_once = True
            assert torch.all(env.accounts.steps[ended] == 0) and torch.all(env.final_accounts.steps[ended] > 0)
            assert torch.equal(final_mask[~ended], env.action_masks()[~ended])
    assert ended_once
