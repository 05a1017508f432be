"""VecTradingEnv: N = S x E long-only trading accounts stepped together as tensors on one device.

Account n trades symbol n // E (symbol-major, `env.layout`: envs.layout). All symbols' features
live in one padded (S, T_max, F) table, so a step is a fixed set of gathers and elementwise ops: no
Python loop over accounts or symbols, no host sync. Timing: the decision at bar t sees bars <= t,
fills at bar t + 1's open (slippage + commission) and is marked at bar t + 1's close. The step's
phases live in envs.phases, the account part of the observation in envs.observation.
"""
from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from einops import rearrange
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from torch import Tensor

from envs.accounts import Accounts, Fill, episode_stats, fill_orders
from envs.bars import NUM_SL_PROBS, Bars, DataError
from envs.config import EnvConfig
from envs.features import CLIP, NUM_REGIME, NUM_TECHNICAL, WARMUP_BARS, compute_features
from envs.layout import AccountLayout
from envs.market_data import load_market
from envs.masking import action_mask
from envs.noise import NoisePool
from envs.observation import account_observation
from envs.phases import (
    Marks,
    commit,
    decide,
    episode_ends,
    mark_to_market,
    push_rings,
    score,
    step_info,
)
from envs.sizing import position_scale
from envs.spec import TradingSpec
from envs.splits import (
    SPLITS,
    derive_split_dates,
    format_timestamp,
    parse_split_dates,
    parse_trade_period,
    split_ranges,
)


class VecTradingEnv(VectorEnv):
    """Gymnasium vector env over `symbols` x `envs_per_symbol` accounts; tensors in and out.

    `trading_spec` is the env-policy interface (observation shapes, action table). `markets`
    (symbol -> Bars) replaces loading from `data_dir`. `split` is "train", "val" or "test".
    Splits are cut at calendar dates common to every symbol (`envs.splits`): config.split_dates,
    or when empty the dates derived from split_fractions over all symbols' timestamps, after which
    `config` holds them (`env.config.split_dates` is what ran). `decision_range[symbol]` = (first
    decision bar, last marked bar), inclusive, inside the symbol's bars of the split: an episode
    that starts at the first decision bar and runs to the end (episode_length=0,
    random_start=False) buys at open[first + 1] at the earliest and is marked last at close[last],
    like buy-and-hold. The lookback window of a split's first decisions reaches back before the
    split's start: those bars are the past, so no look-ahead.
    `final_obs`: "always" (default, the contract) puts info["final_obs"] in every step; "on_end"
    only in steps where some episode ended, so a trainer can skip a critic forward on the other
    steps, at the price of one host read per step (free on CPU); "auto" = "on_end" on CPU only.
    `reuse_obs_memory`: obs["technical"] (and final_obs["technical"]) are written into buffers
    allocated once, so the tensors a step returns are overwritten by the next step (clone to keep
    them). A fresh 36 MB window tensor per step at N = 16384 costs ~8x the copy itself on CPU.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, symbols: Sequence[str], envs_per_symbol: int, config: EnvConfig | None = None,
                 device: torch.device | str = "cpu", *, data_dir: str = "data", split: str = "train",
                 markets: dict[str, Bars] | None = None, seed: int | None = None,
                 final_obs: str = "always", reuse_obs_memory: bool = True) -> None:
        if split not in SPLITS:
            raise ValueError(f"split: must be one of {SPLITS}, got {split!r}")
        if final_obs not in ("auto", "always", "on_end"):
            raise ValueError(f"final_obs: must be 'auto', 'always' or 'on_end', got {final_obs!r}")
        if envs_per_symbol < 1 or not symbols:
            raise ValueError("VecTradingEnv needs at least one symbol and envs_per_symbol >= 1")
        self.config = config or EnvConfig()
        self.config.validate()
        self.trading_spec = TradingSpec.from_config(self.config)
        self.device = torch.device(device)
        self.symbols = list(symbols)
        self.envs_per_symbol = envs_per_symbol
        self.layout = AccountLayout(len(self.symbols), envs_per_symbol)
        """account n trades symbols[n // envs_per_symbol] (envs.layout)"""
        self.num_envs = self.layout.num_accounts
        self.split = split
        # "on_end" reads one bool per step to leave info["final_obs"] out when no episode ended (the
        # trainer then skips a critic forward); free on CPU, a device sync on CUDA, hence "auto".
        self.final_obs_on_end = final_obs == "on_end" or (final_obs == "auto" and self.device.type == "cpu")
        self.reuse_obs_memory = reuse_obs_memory
        self._load_markets(markets, data_dir)
        cfg = self.config  # with the split dates _load_markets settled
        self._seed = seed if seed is not None else int(torch.randint(2**62, ()).item())
        self._build_tables()

        spec = self.trading_spec
        self._actions = spec.tensors(self.device, torch.float64)
        self._hold = spec.hold_id
        self.single_action_space = gym.spaces.Discrete(spec.num_actions)
        self.single_observation_space = gym.spaces.Dict({
            key: gym.spaces.Box(*spec.obs_bounds[key], shape, np.float32)
            for key, shape in spec.obs_shapes.items()})
        self.action_space = gym.spaces.MultiDiscrete(np.full(self.num_envs, spec.num_actions))
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(self._seed)
        self._template = Accounts.fresh(self._first.clone(), cfg.initial_capital, cfg.reward.sharpe_window,
                                        cfg.diversity_window, spec.num_actions)
        # a private copy: steps update the ring buffers in place and must not touch the template
        self.accounts = Accounts.from_state_dict(self._fresh_accounts().state_dict(), self.device)
        self._mask = self._compute_mask()
        self.final_accounts = replace(self.accounts)
        """the accounts as the last step left them, before its ended rows restarted (the state at a
        symbol's last bar, which the auto-reset replaces); valid until the next step"""

    @property
    def observation_space(self) -> gym.spaces.Dict:  # type: ignore[override]
        """Batched Dict space, built on demand (its bounds arrays are large at big N)."""
        return batch_space(self.single_observation_space, self.num_envs)

    # ---- construction -------------------------------------------------------------------------
    def _load_markets(self, markets: dict[str, Bars] | None, data_dir: str) -> None:
        """Bars per symbol (`markets`, else loaded from `data_dir`), the split dates (derived once
        when the config has none) and each symbol's decision range in this env's split."""
        cfg = self.config
        min_bars = WARMUP_BARS + cfg.lookback + max(cfg.episode_length, 1) + 2
        if markets is None:
            markets = load_market(self.symbols, data_dir, min_bars=min_bars, strict=cfg.strict_data)
        missing = [s for s in self.symbols if s not in markets]
        if missing:
            raise ValueError(f"markets: no Bars for {missing}")
        self.markets = {s: markets[s] for s in self.symbols}
        self._derived_dates = not cfg.split_dates  # messages say where the dates came from
        period = parse_trade_period(cfg.trade_period) if cfg.trade_period else None
        if self._derived_dates:  # once, here, so that a run can record and reuse them
            stamps = [b.timestamps if period is None else
                      b.timestamps[(b.timestamps >= period[0]) & (b.timestamps < period[1])]
                      for b in self.markets.values()]
            self.config = cfg = replace(cfg, split_dates=derive_split_dates(stamps, cfg.split_fractions))
        bounds = parse_split_dates(cfg.split_dates)
        self._split_ranges = {s: split_ranges(b.timestamps, bounds, period, cfg.purge_bars)
                              for s, b in self.markets.items()}
        self.decision_range = {s: self._decision_range(bars, *self._split_ranges[s][self.split])
                               for s, bars in self.markets.items()}
        if self.split == "train":
            self._warn_untradable()
            self._warn_costly()

    def _decision_range(self, bars: Bars, start: int, end: int) -> tuple[int, int]:
        """(first decision bar, last marked bar) of the split's bars [start, end); a DataError that
        names the symbol, the split's dates and the fix when one episode does not fit."""
        first, last = max(start, _first_decision(self.config)), end - 1
        needed = max(self.config.episode_length, 1)
        if last - first < needed:
            span = " .. ".join(format_timestamp(int(t)) for t in bars.timestamps[[0, -1]])
            held = (f"has none of its bars (they span {span})" if end == start else
                    f"holds {end - start} of its bars (they span {span}), {max(last - first, 0)} tradable "
                    f"decisions after the lookback ({self.config.lookback}) and warm-up ({WARMUP_BARS}); "
                    f"one episode needs {needed}")
            raise DataError(
                f"{bars.where}: the {self.split} split {self._period(self.split)} {held}. "
                f"{self._dates_origin()} Move them (--set 'env.split_dates=[\"YYYY-MM-DD\", "
                f"\"YYYY-MM-DD\"]', the first validation and first test day), "
                f"{'shorten env.episode_length, ' if end > start else ''}or leave {bars.symbol} out")
        return first, last

    def untradable(self, split: str) -> list[str]:
        """Symbols without a single tradable decision in `split`: an env of that split (with
        episode_length 0) would refuse them."""
        first = _first_decision(self.config)
        return [s for s, r in self._split_ranges.items() if r[split][1] - 1 <= max(r[split][0], first)]

    def _warn_costly(self) -> None:
        """Warn of symbols whose typical bar moves less than a round trip costs: an agent learns that
        trading them does not pay, and stops (the costs are set for daily equities by default)."""
        cost = self.config.round_trip_cost
        for symbol, bars in self.markets.items():
            start, end = self._split_ranges[symbol]["train"]
            close = bars.close[start:end]
            if len(close) < 2:
                continue
            move = float(np.median(np.abs(close[1:] / close[:-1] - 1.0)))
            if move < cost:
                warnings.warn(f"{symbol}: its typical bar moves {move * 1e4:.1f} bp (median |close-to-close return| "
                              f"on the train split), less than a round trip costs ({cost * 1e4:.1f} bp: 2 x "
                              f"(env.commission_bps {self.config.commission_bps:g} + env.slippage_bps "
                              f"{self.config.slippage_bps:g})); the agent will learn that trading does not pay. "
                              "Set costs for the asset class: docs/environment.md, Costs", stacklevel=4)

    def _warn_untradable(self) -> None:
        """Warn, before training starts, of symbols that validation or testing will refuse."""
        for split in ("val", "test"):
            idle = self.untradable(split)
            if idle:
                warnings.warn(f"{', '.join(idle)}: no tradable bar in the {split} split "
                              f"{self._period(split)}; evaluating on {split} will fail for "
                              f"{'it' if len(idle) == 1 else 'them'}. {self._dates_origin()}",
                              stacklevel=4)  # VecTradingEnv(...)'s caller: __init__, _load_markets, here

    def _period(self, split: str) -> str:
        val, test = self.config.split_dates
        return {"train": f"(before {val})", "val": f"[{val}, {test})", "test": f"(from {test})"}[split]

    def _dates_origin(self) -> str:
        how = ("derived from env.split_fractions over the union of all symbols' timestamps"
               if self._derived_dates else "as given")
        dates = list(self.config.split_dates)
        return f"The split dates are common to every symbol: env.split_dates = {dates}, {how}."

    def _build_tables(self) -> None:
        """Pad every symbol's features and prices into (S, T_max, ...) tables, flattened to
        (S * T_max, ...) so one index (symbol * T_max + t) gathers any account's bar."""
        num_symbols = len(self.symbols)
        t_max = max(len(b) for b in self.markets.values())
        tech = torch.zeros(num_symbols, t_max, NUM_TECHNICAL, device=self.device)
        regime = torch.zeros(num_symbols, t_max, NUM_REGIME, device=self.device)
        sl_probs = torch.full((num_symbols, t_max, NUM_SL_PROBS), 0.5, device=self.device)
        prices = torch.ones(2, num_symbols, t_max, dtype=torch.float64, device=self.device)
        scale = torch.ones(num_symbols, t_max, dtype=torch.float64, device=self.device)
        for s, bars in enumerate(self.markets.values()):
            length = len(bars)
            tech[s, :length], regime[s, :length] = compute_features(
                bars, self.device, self.config.feature_norm, self.config.scale_window)
            sl_probs[s, :length] = torch.as_tensor(bars.sl_probs, dtype=torch.float32, device=self.device)
            prices[0, s, :length] = torch.as_tensor(bars.open, device=self.device)
            prices[1, s, :length] = torch.as_tensor(bars.close, device=self.device)
            scale[s, :length] = torch.as_tensor(position_scale(bars, self.config), device=self.device)
        self.t_max = t_max
        self._tech = rearrange(tech, "s t f -> (s t) f")
        self._regime = rearrange(regime, "s t f -> (s t) f")
        self._sl_probs = rearrange(sl_probs, "s t k -> (s t) k")
        self._open, self._close = rearrange(prices, "p s t -> p (s t)")
        self._scale = rearrange(scale, "s t -> (s t)") if self.config.vol_target > 0 else None
        ranges = torch.tensor([self.decision_range[s] for s in self.symbols], device=self.device)  # (S, 2)
        per_account = self.layout.per_account(ranges)  # (N, 2)
        self._first, self._last = per_account[:, 0], per_account[:, 1]
        # (N,) offset of each account's symbol in the flat tables
        self._row = self.layout.symbol_of(self.device) * t_max
        # windows[r] = rows r .. r + L - 1 of the flat table, one contiguous block of L x F floats
        lookback, rows = self.config.lookback, self._tech.shape[0]
        self._windows = self._tech.as_strided((rows - lookback + 1, lookback * NUM_TECHNICAL),
                                              (NUM_TECHNICAL, 1))
        self._obs_memory = [torch.empty(self.num_envs, lookback, NUM_TECHNICAL, device=self.device)
                            for _ in range(2)]
        # one slice per observation: the window's L x F values, then the regime features'
        self._noise = (NoisePool(lookback * NUM_TECHNICAL + NUM_REGIME, self._seed, self.device)
                       if self.config.obs_noise > 0 else None)
        self._window_refs = torch.zeros(self.num_envs, 2, dtype=torch.long, device=self.device)

    def _draw_starts(self) -> Tensor:
        """Episode start bars (N,) long: random in the split when random_start, else its first bar."""
        cfg = self.config
        latest = self._last - max(cfg.episode_length, 1)
        u = torch.rand(self.num_envs, generator=self._generator, device=self.device, dtype=torch.float64)
        random = self._first + (u * (latest - self._first + 1)).long().clamp_max(latest - self._first)
        return random if cfg.random_start else self._first.clone()

    def _fresh_accounts(self, at_last: bool = False) -> Accounts:
        """New accounts at freshly drawn start bars (or each split's last bar); the template's other
        tensors are shared, never written in place (replace_where builds new tensors)."""
        template = self._template
        return Accounts(**{**template.__dict__, "t": self._last.clone() if at_last else self._draw_starts()})

    # ---- gymnasium vector API -----------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Start a new episode in every account; obs is a dict of float32 (N, ...) tensors.
        `options={"at": "last"}` puts every flat account at its split's last bar instead: the
        observation and mask of a decision on the newest bar (for predicting, not for stepping)."""
        if seed is not None:
            self._generator.manual_seed(seed)
        at_last = (options or {}).get("at") == "last"
        # a private copy: steps update the ring buffers in place and must not touch the template
        self.accounts = Accounts.from_state_dict(self._fresh_accounts(at_last).state_dict(), self.device)
        self._mask = self._compute_mask()
        self.final_accounts = replace(self.accounts)
        return self._observe(self._obs_memory[0]), {}

    def action_masks(self) -> Tensor:
        """Valid actions (N, A) bool for the current observations."""
        return self._mask

    def step(self, actions: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor, dict[str, Any]]:
        """Apply one action (N,) per account. Returns obs, reward (N,) float32, terminated (N,) bool,
        truncated (N,) bool and info: final_obs, reward_components (raw) and
        weighted_reward_components (what `reward` sums), policy_action, executed_action,
        mask_violation, repeat_limited, equity, exposure, filled, cost, notional (shares traded x
        open, currency), bar (the bar marked), and
        episode (statistics, valid where _episode is True). Ended rows are reset before returning.
        The phases are envs.phases'; their order matters (see there)."""
        cfg, acc = self.config, self.accounts
        policy_action = torch.as_tensor(actions, device=self.device).long().reshape(self.num_envs)
        decision = decide(acc, policy_action, self._mask, self._actions, self._hold, cfg.max_consecutive_actions)
        fill, marks = self._fill_and_mark(decision.executed)
        push_rings(acc, marks.step_return, decision.executed)
        reward, raw, weighted = score(acc, decision, fill, marks, cfg)
        commit(acc, decision, fill, marks, self.trading_spec.num_actions)
        terminated, truncated = episode_ends(marks, self._last, cfg)
        done = terminated | truncated
        info = step_info(decision, fill, marks, raw, weighted, episode_stats(acc, cfg.initial_capital), done)
        self._end_episodes(done, info)
        return self._observe(self._obs_memory[0]), reward, terminated, truncated, info

    def _fill_and_mark(self, executed: Tensor) -> tuple[Fill, Marks]:
        """Fill `executed` (N,) at the next bar's open and mark the accounts at its close."""
        cfg, acc = self.config, self.accounts
        bar = acc.t + 1
        index = self._row + bar  # (N,) flat row of each account's next bar
        fill = fill_orders(acc, executed, self._open[index], self._actions, self._buy_fractions(acc),
                           cfg.commission_bps * 1e-4, cfg.slippage_bps * 1e-4)
        return fill, mark_to_market(acc, fill, bar, self._close[index])

    def _end_episodes(self, done: Tensor, info: dict[str, Any]) -> None:
        """Observe the ended episodes' last state into info["final_obs"], then restart the rows
        where `done` (N,) bool and refresh the mask."""
        # final_obs="on_end" reads one bool here by design (see the class docstring); the default
        # "always" keeps the step free of host syncs
        if not self.final_obs_on_end or bool(done.any()):
            info["final_obs"] = self._observe(self._obs_memory[1])
        # new tensors replace the restarted rows' (replace_where), so this copy of references keeps
        # the ended state; the rings are updated in place, hence only until the next step
        self.final_accounts = replace(self.accounts)
        self.accounts.replace_where(done, self._fresh_accounts())
        self._mask = self._compute_mask()

    # ---- observations and masks ---------------------------------------------------------------
    def decision_inputs(self, accounts: Accounts) -> tuple[dict[str, Tensor], Tensor]:
        """(observation, mask (N, A) bool) of a decision by `accounts` (N rows, this env's layout)
        at their bars `accounts.t`: the step's own observation and mask code applied to any
        account state, e.g. `final_accounts` at a symbol's last bar or given holdings."""
        return self._observe(torch.empty_like(self._obs_memory[1]), accounts), self._compute_mask(accounts)

    def _compute_mask(self, acc: Accounts | None = None) -> Tensor:
        """Valid actions (N, A) bool of the account state (the current one by default) at its close."""
        acc = acc if acc is not None else self.accounts
        return action_mask(self._actions, self._buy_fractions(acc), acc.cash, acc.shares, acc.equity,
                           self._close[self._row + acc.t],
                           max_exposure=self.config.max_exposure,
                           commission_rate=self.config.commission_bps * 1e-4)

    def _buy_fractions(self, acc: Accounts) -> Tensor:
        """What each buy and add spends, as a fraction of equity, at the accounts' decision bars:
        the table's (A,), or (N, A) scaled by volatility targeting (env.vol_target; envs.sizing)."""
        if self._scale is None:
            return self._actions.buy_fraction
        scale = self._scale[self._row + acc.t]
        return (self._actions.buy_fraction * scale[:, None]).clamp_max(self.config.max_exposure)

    def _observe(self, memory: Tensor, accounts: Accounts | None = None) -> dict[str, Tensor]:
        """The observation dict of the current state (or of `accounts`): float32 (N, ...) tensors;
        technical (N, L, F) is written into `memory` when reuse_obs_memory is on."""
        acc = accounts if accounts is not None else self.accounts
        index = self._row + acc.t  # (N,) flat bar index
        first = index - (self.config.lookback - 1)  # window start, oldest bar first
        noise_at = (self._noise.offsets(self.num_envs, self._generator) if self._noise is not None
                    else torch.zeros_like(first))
        technical = self._technical(first, noise_at, memory if self.reuse_obs_memory else None)
        regime = self._regime[index]
        if self._noise is not None:  # kept inside the declared bounds, as the features are
            regime = regime + self.config.obs_noise * self._noise.slices(noise_at)[:, -NUM_REGIME:]
            regime.clamp_(-CLIP, CLIP)
        if accounts is None:  # the last such call is the current observation's (final_obs comes first)
            self._window_refs = torch.stack([first, noise_at], dim=1)
        values = {"technical": technical, "sl_probs": self._sl_probs[index], "regime": regime,
                  **account_observation(acc, self._close[index], self._actions, self.config, self.trading_spec)}
        return {key: values[key] for key in self.trading_spec.obs_shapes}  # the spec's keys, in its order

    def _technical(self, first: Tensor, noise_at: Tensor, out: Tensor | None = None) -> Tensor:
        """(B, L, F) lookback windows starting at flat rows `first` (B,), plus obs_noise x the noise
        pool's slices at `noise_at` (B,): a pure function of its inputs, so a rollout buffer can
        store (first, noise_at) and rebuild the exact window. Written into `out` when given."""
        rows = first.shape[0]
        if out is not None:
            technical = torch.index_select(self._windows, 0, first, out=out.view(rows, -1))
        else:
            technical = self._windows.index_select(0, first)
        if self._noise is not None:  # kept inside the declared bounds, as the features are
            technical.add_(self._noise.slices(noise_at)[:, :technical.shape[1]], alpha=self.config.obs_noise)
            technical.clamp_(-CLIP, CLIP)
        return technical.view(rows, self.config.lookback, NUM_TECHNICAL)

    def compact_observations(self) -> dict[str, "WindowRefs"]:
        """{"technical": ...} for a RolloutBuffer that stores each lookback window as its (flat
        start row, noise offset) instead of L x F floats."""
        return {"technical": WindowRefs(self)}

    # ---- checkpointing ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Account state, the generator (episode starts, noise offsets) and the current observation's
        window references, for an exact resume."""
        return {"accounts": self.accounts.state_dict(), "generator": self._generator.get_state(),
                "window_refs": self._window_refs.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict saved; the mask is recomputed from the accounts."""
        self.accounts = Accounts.from_state_dict(state["accounts"], self.device)
        self.final_accounts = replace(self.accounts)
        self._generator.set_state(state["generator"])
        self._mask = self._compute_mask()
        if "window_refs" in state:
            self._window_refs = state["window_refs"].to(self.device)
        else:  # written before compact storage: the current window, without its noise draw
            first = self._row + self.accounts.t - (self.config.lookback - 1)
            self._window_refs = torch.stack([first, torch.zeros_like(first)], dim=1)


class WindowRefs:
    """obs["technical"] of a VecTradingEnv as (flat window start row, noise offset) int64 pairs."""

    ref_width = 2

    def __init__(self, env: VecTradingEnv) -> None:
        self.env = env

    def refs(self) -> Tensor:
        """(N, 2) references of the env's current technical observation."""
        return self.env._window_refs

    def expand(self, refs: Tensor) -> Tensor:
        """(B, 2) -> (B, L, F) float32 windows, bit-identical to what the env observed."""
        return self.env._technical(refs[:, 0], refs[:, 1])


def _first_decision(config: EnvConfig) -> int:
    """The earliest bar whose lookback window holds only warmed-up features."""
    return WARMUP_BARS + config.lookback - 1

