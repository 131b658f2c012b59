"""The command line: usage errors (one line, exit status 2), a script's `__main__`, and flags parsed
into dataclasses from the command line or a YAML/JSON config file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


class UsageError(ValueError):
    """The user's mistake (a flag value, an input that is missing or unreadable), not a bug: the
    scripts print it as one line and exit with status 2, as argparse does for a bad flag."""


class MissingInputError(UsageError, FileNotFoundError):
    """A file or folder the user named (dataset, model, config, checkpoint) does not exist."""


def refuse_changed_flags(checkpoint, saved: dict, now: dict, keys) -> None:
    """Resume only with the values a checkpoint was written with: refuse, naming each of `keys` whose value
    in `now` differs from `saved` (a key either side lacks, as a flag added since, passes)."""
    changed = [
        f"--{k}={saved[k]} (now {now[k]})"
        for k in sorted(keys)
        if k in saved and k in now and saved[k] != now[k]
    ]
    if changed:
        raise UsageError(
            f"{checkpoint} was written with other settings: {', '.join(changed)}; resume with the "
            "checkpoint's values to continue identically, or start a new --output_dir"
        )


def run_script(cli) -> None:
    """A script's `__main__`: run `cli()`; a UsageError ends in `error: <message>` on stderr and exit
    status 2, with no traceback. Every other exception is a bug and keeps its traceback."""
    try:
        cli()
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def config_file_flags(path: Path) -> list[str]:
    """A YAML/JSON config file as the equivalent flags (a list is one flag with several values;
    `null` keeps the default), so that the parser checks names and types as for a command line."""
    if not path.is_file():
        raise MissingInputError(f"config file not found: {path}")
    if path.suffix == ".json":
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}: not valid JSON ({e})") from None
    else:
        import yaml

        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise UsageError(f"{path}: not valid YAML ({getattr(e, 'problem', None) or e}{where})") from None
    if not isinstance(values, dict):
        raise UsageError(f"{path}: a config file holds `name: value` pairs, got {type(values).__name__}")
    flags = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            flags += [f"--{key}", *map(str, value)] if value else []
        elif isinstance(value, dict):
            flags.append(f"--{key}={json.dumps(value)}")
        else:
            flags.append(f"--{key}={value}")
    return flags


def parse_args(
    dataclass_types,
    argv: list[str] | None = None,
    renamed: dict[str, str] | None = None,
    defaults: dict[str, Any] | None = None,
):
    """Parse flags into dataclasses with `HfArgumentParser`. A .yaml/.json path as the first
    argument is a config file; flags after it override its values (`ppo.py cfg.yaml --steps=32`).

    `renamed` maps old flag names to current ones (e.g. --evaluation_strategy -> --eval_strategy)
    so command lines from older versions keep working; `defaults` overrides library defaults."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_types)
    parser.set_defaults(**(defaults or {}))
    for action in parser._actions:
        # A `bool | None` field (None: decided at run time) takes a bare --flag as True, like a bool one.
        if getattr(action.type, "__name__", "") == "string_to_bool" and action.nargs is None:
            action.nargs, action.const = "?", True
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0].endswith((".yaml", ".yml", ".json")):
        argv = config_file_flags(Path(argv[0])) + argv[1:]
    fixed = []
    for arg in argv:
        for old, new in (renamed or {}).items():
            if arg == f"--{old}" or arg.startswith(f"--{old}="):
                print(f"[args] --{old} is the old name of --{new}; using --{new}", file=sys.stderr)
                arg = f"--{new}" + arg[len(old) + 2 :]
        fixed.append(arg)
    try:
        return parser.parse_args_into_dataclasses(args=fixed)
    except ValueError as e:  # a dataclass's __post_init__ refusing a combination of flag values
        raise UsageError(" ".join(str(e).split())) from e
