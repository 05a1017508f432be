"""`python -m envs.fetch SPY AAPL` writes `data/SPY.parquet` and `data/AAPL.parquet` from Yahoo
Finance in the bundled files' schema. The command line only: the work is envs.yahoo's, which is
what other modules import.
"""
from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from envs.yahoo import DEFAULT_START, HISTORY_DAYS, INSTALL, ExtraMissing, fetch_symbols, make_request


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m envs.fetch`."""
    parser = argparse.ArgumentParser(
        prog="python -m envs.fetch",
        description="Download bars from Yahoo Finance (yfinance, an optional extra: "
                    f"{INSTALL}) into <data-dir>/<SYMBOL>.parquet, the files trainers.ppo reads.",
        epilog="History limits (Yahoo's, as yfinance documents them): 1d bars go back to each listing; "
               "1h bars cover the last 730 days only, and an earlier --start is refused with that reason. "
               "Exit status 1 when any symbol failed (the others are still written), 2 for bad arguments "
               "or a missing yfinance.")
    parser.add_argument("symbols", nargs="+", metavar="SYMBOL", help="Yahoo tickers, e.g. SPY AAPL")
    parser.add_argument("--start", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help=f"first day (default: {DEFAULT_START} for 1d, the earliest allowed for 1h)")
    parser.add_argument("--end", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="day after the last bar, exclusive (default: up to now)")
    parser.add_argument("--interval", choices=list(HISTORY_DAYS), default="1d",
                        help="bar length (default 1d; 1h: last 730 days only)")
    parser.add_argument("--data-dir", type=Path, default=Path("data"),
                        help="folder to write <SYMBOL>.parquet into (default: data; created if missing)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--adjusted", dest="adjusted", action="store_true", default=True,
                       help="prices adjusted for splits and dividends (default)")
    group.add_argument("--raw", dest="adjusted", action="store_false",
                       help="Yahoo's traded prices (Yahoo still adjusts them for splits)")
    parser.add_argument("--force", action="store_true", help="replace files that already exist")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Fetch the symbols in `argv`; exit status 0, 1 when any symbol failed, 2 for bad arguments."""
    args = build_parser().parse_args(argv)
    symbols = list(dict.fromkeys(args.symbols))  # once each, in the order given
    bad = [s for s in symbols if not s or Path(s).name != s or s.startswith(".")]
    try:
        if bad:
            raise ValueError(f"SYMBOL {bad[0]!r}: not a ticker (it must be usable as a file name)")
        request = make_request(args.start, args.end, args.interval, args.adjusted)
        results = fetch_symbols(symbols, args.data_dir, request, force=args.force)
    except (ValueError, ExtraMissing) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = [r.symbol for r in results if r.status == "failed"]
    counts = {status: sum(r.status == status for r in results) for status in ("written", "kept", "failed")}
    print(", ".join(f"{n} {status}" for status, n in counts.items())
          + (f" ({', '.join(failed)}: see above)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
