"""The account layout: N = S x E accounts, symbol-major, so account n trades symbol n // E and is
account n % E of that symbol. Everything that groups accounts by symbol (the env's bar tables, the
policy's per-symbol heads, the rollout buffer's groups, per-symbol statistics) goes through this
one helper instead of re-deriving the order.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor


@dataclass(frozen=True)
class AccountLayout:
    """`num_symbols` (S) symbols with `per_symbol` (E) accounts each, symbol-major."""

    num_symbols: int
    per_symbol: int

    def __post_init__(self) -> None:
        if self.num_symbols < 1 or self.per_symbol < 1:
            raise ValueError(f"AccountLayout needs num_symbols >= 1 and per_symbol >= 1, got "
                             f"{self.num_symbols} x {self.per_symbol}")

    @classmethod
    def of_batch(cls, num_rows: int, num_symbols: int) -> AccountLayout:
        """The layout of a symbol-major batch of `num_rows` rows over `num_symbols` symbols;
        ValueError when the rows do not split evenly."""
        if num_rows % num_symbols:
            raise ValueError(f"batch of {num_rows} rows is not divisible by {num_symbols} symbols: expected "
                             f"N = S * E rows, symbol-major (row n trades symbol n // E)")
        return cls(num_symbols, num_rows // num_symbols)

    @property
    def num_accounts(self) -> int:
        """N = S x E."""
        return self.num_symbols * self.per_symbol

    def symbol_of(self, device: torch.device | str | None = None) -> Tensor:
        """(N,) long: the symbol index of each account, n // E."""
        return torch.arange(self.num_symbols, device=device).repeat_interleave(self.per_symbol)

    def role(self, device: torch.device | str | None = None) -> Tensor:
        """(N,) long: each account's index within its symbol, n % E."""
        return torch.arange(self.num_accounts, device=device) % self.per_symbol

    def account(self, symbol: int, role: int) -> int:
        """The flat index n of account `role` (0 <= role < E) of symbol `symbol`: symbol x E + role."""
        if not (0 <= symbol < self.num_symbols and 0 <= role < self.per_symbol):
            raise IndexError(f"account ({symbol}, {role}) is outside {self.num_symbols} symbols x "
                             f"{self.per_symbol} accounts")
        return symbol * self.per_symbol + role

    def accounts_of(self, symbol: int) -> slice:
        """The rows of symbol `symbol` in any (N, ...) tensor."""
        return slice(symbol * self.per_symbol, (symbol + 1) * self.per_symbol)

    def per_account(self, x: Tensor) -> Tensor:
        """(S, ...) per-symbol values -> (N, ...), each symbol's row repeated for its E accounts."""
        return x.repeat_interleave(self.per_symbol, dim=0)

    def by_symbol(self, x: Tensor) -> Tensor:
        """(N, ...) -> (S, E, ...), a view."""
        return rearrange(x, "(s e) ... -> s e ...", s=self.num_symbols, e=self.per_symbol)

    def flat(self, x: Tensor) -> Tensor:
        """(S, E, ...) -> (N, ...), the inverse of by_symbol."""
        return rearrange(x, "s e ... -> (s e) ...", s=self.num_symbols, e=self.per_symbol)
