"""Dataclasses to a command line, on transformers' ``HfArgumentParser``: the project's one way to build a CLI.

Each dataclass field becomes ``--field_name`` (and ``--field-name``), with the field's ``metadata["help"]``
as its help and its default shown; booleans take ``--flag``, ``--flag false`` or ``--no_flag``. An optional
``--config FILE`` (YAML or JSON) sets fields first and the flags given on the command line override it.
The file is flat (``{field: value}``) or split into sections (``{section: {field: value}}``, as written by
``yaml.safe_dump({name: dataclasses.asdict(config)})``); a key that is no field of the parsed dataclasses is
an error. A field name that several dataclasses share (``device``, ``refine_schedule``) is one option that sets
them all; when it is not given, each keeps its own default. The env's old argument names (``backbone_device``,
``backbone_dtype``) are read as their new ones with a ``FutureWarning``.

>>> from dataclasses import dataclass, field
>>> @dataclass
... class Args:
...     steps: int = field(default=20, metadata={"help": "denoising steps"})
...     query: str = field(default="a red circle", metadata={"help": "the user's query"})
>>> parse_config(Args, ["--steps", "8"])
Args(steps=8, query='a red circle')
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from transformers import HfArgumentParser

from promptloop_env.config import rename_arguments

T = TypeVar("T")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help; the description printed as written."""


def config_parser(
    dataclass_types: type | Iterable[type],
    description: str | None = None,
    prog: str | None = None,
    config_flag: str | None = "--config",
) -> HfArgumentParser:
    """An ``HfArgumentParser`` with one option per field of ``dataclass_types`` (plus ``config_flag``).

    Args:
        dataclass_types: one dataclass or several (their field names must be distinct).
        description: the ``--help`` text; the first paragraph of a module docstring is a good one.
        prog: the program name shown in usage lines (default: the script's name).
        config_flag: the option that names a YAML / JSON config file; ``None`` for none.
    """
    # "resolve": a field several dataclasses share is one option (the last one declared), read by all of them.
    parser = HfArgumentParser(
        dataclass_types,
        description=description,
        prog=prog,
        formatter_class=_HelpFormatter,
        conflict_handler="resolve",
    )
    share_fields(parser, dataclass_types)
    if config_flag:
        parser.add_argument(
            config_flag, dest="_config_file", default=None, metavar="FILE", help="YAML or JSON file of field values"
        )
    return parser


def share_fields(parser: argparse.ArgumentParser, dataclass_types: type | Iterable[type]) -> None:
    """Let a field that several of ``dataclass_types`` share default to each dataclass's own default.

    The parser (built with ``conflict_handler="resolve"``) holds one option for such a field; it sets every
    dataclass's field when given (on the command line or in a config file), and none when not.
    """
    types = [dataclass_types] if isinstance(dataclass_types, type) else list(dataclass_types)
    counts: dict[str, int] = {}
    for t in types:
        for f in dataclasses.fields(t):
            counts[f.name] = counts.get(f.name, 0) + 1
    for action in parser._actions:
        if counts.get(action.dest, 0) > 1:
            action.default = argparse.SUPPRESS
            action.help = f"{action.help or ''} (sets the field of every section that has it)".strip()


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML (``.yaml`` / ``.yml``) or JSON file.

    Raises:
        ValueError: the file does not hold a mapping.
    """
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix.lower() in (".yaml", ".yml"):
        import yaml  # a dependency of transformers and huggingface_hub

        payload = yaml.safe_load(text) or {}
    else:
        payload = json.loads(text)
    if not isinstance(payload, Mapping):
        raise ValueError(f"config file {os.fspath(path)!r} must hold a mapping of field names to values")
    return dict(payload)


def config_values(
    payload: Mapping[str, Any], dataclass_types: Sequence[type], sections: Mapping[str, type] | None = None
) -> dict[str, Any]:
    """Flat ``{field: value}`` for ``dataclass_types`` from a config file's mapping.

    Without ``sections`` the mapping is flat, or its mapping values are sections that are flattened. With
    ``sections`` (``{section name: dataclass}``, every section a file may have) it must be made of those
    sections; those whose dataclass is not among ``dataclass_types`` are skipped (a training config can be
    read by an evaluation command).

    Raises:
        ValueError: an unknown section or field, or one field set twice.

    >>> from dataclasses import field, make_dataclass
    >>> Env, Train = make_dataclass("Env", [("steps", int, field(default=20))]), make_dataclass("Train", ["lr"])
    >>> config_values({"env": {"steps": 8}, "train": {"lr": 0.1}}, [Env], sections={"env": Env, "train": Train})
    {'steps': 8}
    """
    fields = {f.name for t in dataclass_types for f in dataclasses.fields(t) if f.init}
    values: dict[str, Any] = {}
    payload = {k: rename_arguments(v, f"section {k!r}") if isinstance(v, Mapping) else v for k, v in payload.items()}
    payload = rename_arguments(payload, "config")
    for key, value in payload.items():
        if sections is not None:
            if key not in sections:
                raise ValueError(f"unknown section {key!r}; valid: {', '.join(sections)}")
            if sections[key] not in dataclass_types:
                continue
            known = {f.name for f in dataclasses.fields(sections[key]) if f.init}
            unknown = sorted(set(value or {}) - known)
            if unknown:
                raise ValueError(f"section {key!r} sets unknown fields {unknown}; valid: {sorted(known)}")
        section = (value or {}) if sections is not None or isinstance(value, Mapping) else {key: value}
        for name, item in section.items():
            # None is "not set": a field shared by two sections may be set in one of them only.
            if values.get(name) is not None and item is not None and values[name] != item:
                raise ValueError(f"{name!r} is set twice, to {values[name]!r} and {item!r}")
            if item is not None or name not in values:
                values[name] = item
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"unknown fields {unknown}; valid: {sorted(fields)}")
    return values


def parse_configs(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    description: str | None = None,
    prog: str | None = None,
    config_flag: str | None = "--config",
    sections: Mapping[str, type] | None = None,
) -> tuple[Any, ...]:
    """Parse ``argv`` (default ``sys.argv[1:]``) into one instance of each of ``dataclass_types``.

    Values come from the fields' defaults, then the config file named by ``config_flag`` (read by
    :func:`read_config_file` and :func:`config_values` with ``sections``), then the flags. Unknown flags,
    config keys and bad values exit with a usage message (``SystemExit(2)``), as argparse does.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Env:
    ...     steps: int = 20
    >>> @dataclass
    ... class Train:
    ...     lr: float = 1e-3
    ...     progress: bool = True
    >>> parse_configs([Env, Train], ["--lr", "0.5", "--no-progress"])
    (Env(steps=20), Train(lr=0.5, progress=False))
    """
    parser = config_parser(dataclass_types, description, prog, config_flag)
    args = list(argv) if argv is not None else None
    if config_flag:
        known, _ = parser.parse_known_args(args)
        if known._config_file:
            try:
                values = config_values(read_config_file(known._config_file), dataclass_types, sections)
            except (OSError, ValueError) as err:
                parser.error(f"{known._config_file}: {err}")
            for action in parser._actions:
                if action.dest in values:
                    action.required = False  # the file provides it
            parser.set_defaults(**values)
    namespace, rest = parser.parse_known_args(args)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return tuple(config_from_namespace(t, namespace) for t in dataclass_types)


def config_from_namespace(dataclass_type: type[T], namespace: argparse.Namespace) -> T:
    """``dataclass_type`` from the parsed options that are its fields (shared ones are read by every dataclass)."""
    names = [f.name for f in dataclasses.fields(dataclass_type) if f.init]
    return dataclass_type(**{name: getattr(namespace, name) for name in names if hasattr(namespace, name)})


def parse_config(dataclass_type: type[T], argv: Sequence[str] | None = None, **kwargs: Any) -> T:
    """:func:`parse_configs` for one dataclass; ``kwargs`` are its ``description``, ``prog``, ``config_flag``."""
    return parse_configs([dataclass_type], argv, **kwargs)[0]


def with_defaults(dataclass_type: type[T], **defaults: Any) -> type[T]:
    """A subclass of ``dataclass_type`` whose fields ``defaults`` default to other (immutable) values, help kept.

    For a script that takes a shared section (the env's :class:`~promptloop_agents.configs.EnvConfig`, a
    benchmark's batch) with defaults of its own; subclass the result to add the script's own fields.

    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Env:
    ...     steps: int = field(default=20, metadata={"help": "denoising steps"})
    ...     size: int = 64
    >>> Short = with_defaults(Env, steps=4)
    >>> Short(), parse_config(Short, ["--size", "32"]), dataclasses.fields(Short)[0].metadata["help"]
    (Env(steps=4, size=64), Env(steps=4, size=32), 'denoising steps')
    """
    fields = {f.name: f for f in dataclasses.fields(dataclass_type)}
    unknown = set(defaults) - set(fields)
    if unknown:
        raise TypeError(f"{dataclass_type.__name__} has no field {', '.join(sorted(unknown))}")
    hints = typing.get_type_hints(dataclass_type)
    namespace: dict[str, Any] = {"__annotations__": {name: hints[name] for name in defaults}}
    namespace |= {"__module__": dataclass_type.__module__, "__qualname__": dataclass_type.__qualname__}
    namespace["__doc__"] = dataclass_type.__doc__
    for name, value in defaults.items():
        namespace[name] = dataclasses.field(default=value, metadata=fields[name].metadata)
    return dataclasses.dataclass(type(dataclass_type.__name__, (dataclass_type,), namespace))


def write_json(path: str | os.PathLike, payload: Any, indent: int = 2) -> Path:
    """Write ``payload`` as JSON (with a final newline) to ``path``, creating its folder; the scripts' result files.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     write_json(Path(folder) / "a" / "b.json", {"x": 1}, indent=None).read_text()
    '{"x": 1}\\n'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=indent) + "\n")
    return path


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table of ``header`` and ``rows`` (cells as ``str``), one line a row; the scripts' printed tables.

    >>> print(markdown_table(["agent", "strict"], [["rule", "0.512"], ["policy", 0.7]]))
    | agent | strict |
    |---|---|
    | rule | 0.512 |
    | policy | 0.7 |
    """
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def format_ci(summary: Mapping[str, float], signed: bool = False) -> str:
    """``"mean [ci_low, ci_high]"`` of a bootstrap summary, three decimals (with a sign when ``signed``).

    >>> format_ci({"mean": 0.5, "ci_low": 0.41, "ci_high": 0.6})
    '0.500 [0.410, 0.600]'
    >>> format_ci({"mean": -0.1, "ci_low": -0.2, "ci_high": 0.0}, signed=True)
    '-0.100 [-0.200, +0.000]'
    """
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"{fmt.format(summary['mean'])} [{fmt.format(summary['ci_low'])}, {fmt.format(summary['ci_high'])}]"
