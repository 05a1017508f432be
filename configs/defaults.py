"""Write configs/default.toml from the config dataclasses, the only home of every default.

    python -m configs.defaults --write   # after changing a default or a field's docstring
    python -m configs.defaults --check   # exit 1, naming each field, when the file is out of date

Every field of TrainConfig is written with its dataclass default and, as its comment, the field's
docstring (the string under the field); a table's comment is the docstring of the field that holds
it. The encoder sizes that run.encoder_preset sets are left out, with a note listing the presets.
tests/test_configs.py runs the check.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
import textwrap
import tomllib
import typing
from functools import cache
from typing import Any

from configs.loader import _toml_value, flatten, to_dict
from configs.run import ENCODER_PRESETS
from configs.train import DEFAULT_CONFIG, TrainConfig

WIDTH = 100
"""line width of the file"""
COMMENT_COLUMN = 29
"""column of the comments beside the values"""
PRESET_TABLE = "model.encoder"
"""the table whose ENCODER_PRESETS fields are left out"""

HEADER = """\
The trainer's defaults: every field of configs/train.py's TrainConfig, except the [model.encoder]
sizes that run.encoder_preset sets (see [model.encoder] below). Generated from the config
dataclasses, whose field defaults are the only home of every default, and whose field docstrings
are the comments: to change a default, edit the dataclass and run
python -m configs.defaults --write (tests/test_configs.py fails while this file differs).
"guide:" marks each value that differs from the training guide's Stage 5 baseline, with why;
configs/seed_stage5.toml is that baseline as written. The differences were measured with
python bench/learning.py (docs/results.md, Learning; docs/design.md, The seed and the training guide).
To change a run, copy this file, edit, and pass it with --config; or change single fields with
--set section.key=value. Steps are account-steps (all accounts of all symbols count).
Observation shapes and the action count are not settings here: they follow from [env]
(lookback, actions) through the env's TradingSpec."""


def render() -> str:
    """The text of configs/default.toml for the current dataclass defaults."""
    lines = _comment(HEADER, "")
    _table(TrainConfig, TrainConfig(), "", lines)
    return "\n".join(lines) + "\n"


def differences(text: str) -> list[str]:
    """What keeps `text` (a default.toml) from being `render()`'s, one line per field at fault;
    empty when they are equal."""
    if text == render():
        return []
    try:
        written = flatten(tomllib.loads(text))
    except tomllib.TOMLDecodeError as err:
        return [f"invalid TOML: {err}"]
    expected = flatten(tomllib.loads(render()))
    problems = [f"{key}: missing (dataclass default {_toml_value(value)})"
                for key, value in expected.items() if key not in written]
    problems += [f"{key}: not a field with a default here" for key in written if key not in expected]
    problems += [f"{key}: {_toml_value(written[key])} differs from the dataclass default "
                 f"{_toml_value(value)}" for key, value in expected.items()
                 if key in written and written[key] != value]
    return problems or ["the values match, but the comments or layout differ from the field docstrings"]


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring under it in the class body, or its `doc` metadata (fields made
    from a registry, e.g. the reward terms' weights), whitespace collapsed."""
    docs = {f.name: " ".join(f.metadata["doc"].split()) for f in dataclasses.fields(cls) if "doc" in f.metadata}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass) and "__dataclass_fields__" in vars(klass) and _has_source(klass):
            docs.update(_own_field_docs(klass))
    return docs


def _has_source(cls: type) -> bool:
    try:
        inspect.getsource(cls)
    except (OSError, TypeError):  # made at run time (dataclasses.make_dataclass)
        return False
    return True


@cache
def _own_field_docs(cls: type) -> dict[str, str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef)).body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                and isinstance(after.value.value, str):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _table(cls: type, value: Any, path: str, lines: list[str]) -> None:
    """Append `value`'s scalars (with their docstrings), then its sub-tables."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    tables = [f for f in fields if dataclasses.is_dataclass(hints[f.name])]
    scalars = [f for f in fields if f not in tables]
    if path == PRESET_TABLE:
        lines += _preset_note(value)
        scalars = [f for f in scalars if f.name not in ENCODER_PRESETS["small"]]
    for f in scalars:
        lines += _entry(f.name, to_dict(getattr(value, f.name)), docs.get(f.name, ""))
    for f in tables:
        name = f"{path}.{f.name}" if path else f.name
        lines += ["", f"[{name}]", *_comment(docs.get(f.name, ""), "")]
        _table(hints[f.name], getattr(value, f.name), name, lines)


def _entry(key: str, value: Any, doc: str) -> list[str]:
    """`key = value`, its docstring beside it from COMMENT_COLUMN on (above it for a multi-line value)."""
    line = f"{key} = {_toml_value(value)}"
    if not doc:
        return [line]
    if "\n" in line:
        return [*_comment(doc, ""), line]
    start = max(COMMENT_COLUMN, len(line) + 2)
    first, *rest = _wrap(doc, WIDTH - start - 2) or [""]
    rest = _wrap(" ".join(rest), WIDTH - COMMENT_COLUMN - 4)
    return [f"{line.ljust(start)}# {first}", *(" " * COMMENT_COLUMN + f"#   {text}" for text in rest)]


def _comment(text: str, indent: str) -> list[str]:
    """`text` as `# ` lines of at most WIDTH characters; its own line breaks are kept."""
    out = []
    for paragraph in text.splitlines():
        out += [f"{indent}# {line}" for line in _wrap(paragraph, WIDTH - len(indent) - 2)]
    return out


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False)


def _preset_note(encoder: Any) -> list[str]:
    names = list(ENCODER_PRESETS["small"])

    def sizes(values: dict[str, Any]) -> str:
        return ", ".join(f"{name} {values[name]}" for name in names)

    note = [f"run.encoder_preset sets {', '.join(names)}, so none of them is set here:"]
    note += [f"  {preset + ':':7}{sizes(values)}" for preset, values in ENCODER_PRESETS.items()]
    note += ['  auto (default): full on CUDA, small on CPU; the run\'s config.toml records the choice.',
             "Setting one of them to another value than the preset's is an error; with run.encoder_preset "
             "= \"custom\" they are used as written, and unset ones keep the dataclass defaults: "
             f"{sizes(to_dict(encoder))}."]
    return [line for text in note for line in (_comment(text, "") if not text.startswith("  ")
                                                 else [f"# {text}"])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m configs.defaults", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help=f"write {DEFAULT_CONFIG}")
    action.add_argument("--check", action="store_true", help="exit 1 when the file is out of date")
    args = parser.parse_args(argv)
    if args.write:
        DEFAULT_CONFIG.write_text(render())
        print(f"wrote {DEFAULT_CONFIG}")
        return 0
    problems = differences(DEFAULT_CONFIG.read_text() if DEFAULT_CONFIG.is_file() else "")
    for problem in problems:
        print(f"{DEFAULT_CONFIG.name}: {problem}", file=sys.stderr)
    if problems:
        print("run: python -m configs.defaults --write", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
