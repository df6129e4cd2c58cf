"""Typed configs: YAML files and `key=value` overrides merged into dataclasses, strictly.

Defaults live only in the dataclasses. An unknown key (with a did-you-mean), a missing required key
or a wrong type raises `ConfigError` naming the key and the source; all errors are reported together.
Anchors: nanoGPT's configurator (type match), torchtune's `key=value` overrides, TamperBench's
`from_dict` key checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from cir.errors import ConfigError
from cir.files import read_text

T = TypeVar("T")

# Every top-level section of a config file; each command reads the ones it uses and ignores the rest.
SECTIONS = ("unlearn", "method", "methods", "attack", "attacks", "bench", "tune", "eval")


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping from `path`.

    Raises:
        ConfigError: if the file is missing, a directory, unreadable, not UTF-8, not valid YAML, or
            not a mapping.
    """
    path = Path(path)
    text = read_text(path, "config file", ConfigError)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or " ".join(str(error).split())
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn `["a.b=1", "c=x"]` into `{"a": {"b": 1}, "c": "x"}`; values are parsed as YAML scalars.

    Raises:
        ConfigError: if an item has no `=`, an empty key part, a value that is not valid YAML, or
            sets a key below one that another item set to a plain value.
    """
    result: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        *parents, leaf = key.split(".")
        if not sep or not all(parents) or not leaf:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. unlearn.budget=0.01)")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as error:
            detail = " ".join(str(error).split())
            raise ConfigError(f"override {item!r}: value is not valid YAML ({detail})") from error
        node = result
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is set to a value by another override")
        node[leaf] = value
    return result


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Return `base` with `update` merged in, recursively for nested mappings."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_error(problems: list[str]) -> ConfigError:
    """One ConfigError for every problem found: one line for one problem, a line each for several."""
    if len(problems) == 1:
        return ConfigError(f"invalid config: {problems[0]}")
    return ConfigError("invalid config:\n  " + "\n  ".join(problems))


def from_dict(cls: type[T], data: Mapping[str, Any], source: str = "config") -> T:
    """Build dataclass `cls` from `data`, checking every key and type.

    Raises:
        ConfigError: listing every unknown key, missing required key and wrong type.
    """
    errors: list[str] = []
    instance = _build(cls, data, source, errors)
    if errors:
        raise config_error(errors)
    return instance  # type: ignore[return-value]


def to_dict(config: Any) -> dict[str, Any]:
    """Return a JSON-friendly dict of a config dataclass (paths as strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def split_sections(data: Mapping[str, Any], sections: list[str], source: str) -> dict[str, dict[str, Any]]:
    """Check the top-level sections of a config and return the ones a command uses.

    Every top-level key must be one of `SECTIONS` and hold a mapping; the known sections not in
    `sections` are ignored, so one experiment file serves every command.

    Args:
        data: the whole config (file and overrides merged).
        sections: the sections the command reads, each one of `SECTIONS`.
        source: where the config came from, for the messages.

    Returns:
        Each of `sections` as a mapping (empty when absent).

    Raises:
        ConfigError: naming each unknown section (with a did-you-mean) and each that is not a mapping.
    """
    assert set(sections) <= set(SECTIONS), f"{sections} are not all in SECTIONS"
    errors = [_unknown(key, SECTIONS, source, "section") for key in data if key not in SECTIONS]
    errors += [
        f"{source}: section {key!r} must be a mapping, got {type(value).__name__}"
        for key, value in data.items()
        if key in SECTIONS and not isinstance(value, Mapping)
    ]
    if errors:
        raise config_error(errors)
    return {name: dict(data.get(name, {})) for name in sections}


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split a command line into everything else and its overrides, keeping their order.

    An override is a token `key=value` whose key's first dotted part is one of `SECTIONS`
    (`methods.cir.k_act=8`): taken out before argument parsing, it stays an override wherever it
    stands, even after an option that takes a list.

    Returns:
        (the other tokens, the overrides).
    """
    rest: list[str] = []
    overrides: list[str] = []
    for token in argv:
        key, sep, _ = token.partition("=")
        is_override = bool(sep) and key.split(".")[0] in SECTIONS
        (overrides if is_override else rest).append(token)
    return rest, overrides


def _unknown(key: str, known: typing.Iterable[str], source: str, kind: str = "key") -> str:
    """`unknown key 'x' (did you mean 'y'?)`; an unknown section with no close match lists the known."""
    known = list(known)
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        hint = f" (did you mean {close[0]!r}?)"
    else:
        hint = f" (known: {', '.join(known)})" if kind == "section" else ""
    return f"{source}: unknown {kind} {key!r}{hint}"


def _build(cls: type, data: Mapping[str, Any], source: str, errors: list[str]) -> Any:
    if not isinstance(data, Mapping):
        errors.append(f"{source}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
        return None
    errors_before = len(errors)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    errors.extend(_unknown(key, fields, source) for key in data if key not in fields)
    values: dict[str, Any] = {}
    for name, field in fields.items():
        where = f"{source}: {name}"
        if name in data:
            values[name] = _coerce(data[name], hints[name], where, errors)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            errors.append(f"{where}: required key is missing")
    if len(errors) > errors_before:
        return None
    return cls(**values)


def _coerce(value: Any, hint: Any, where: str, errors: list[str]) -> Any:
    """Check `value` against type `hint`, converting where it is lossless (int -> float, str -> Path)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:
            trial: list[str] = []
            result = _coerce(value, option, where, trial)
            if not trial:
                return result
        errors.append(f"{where}: expected {_name(hint)}, got {value!r}")
        return None
    if origin is typing.Literal:
        if value not in args:
            errors.append(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            errors.append(f"{where}: expected a list, got {value!r}")
            return None
        item_hint = args[0] if args else Any
        items = [_coerce(v, item_hint, f"{where}[{i}]", errors) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, where, errors)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is Path and isinstance(value, str):
        return Path(value)
    if hint is bool and not isinstance(value, bool):
        errors.append(f"{where}: expected true or false, got {value!r}")
        return None
    if hint is int and isinstance(value, bool):
        errors.append(f"{where}: expected an integer, got {value!r}")
        return None
    if isinstance(hint, type) and not isinstance(value, hint):
        errors.append(f"{where}: expected {_name(hint)}, got {value!r}")
        return None
    return value


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def require(config: Any, section: str, checks: list[tuple[str, str, bool]]) -> None:
    """Raise one ConfigError naming every field whose check failed.

    Args:
        config: the dataclass being checked (for the values in the message).
        section: the config section, e.g. "method", prefixed to each field name.
        checks: (field, rule in words, whether it holds) triples.

    Raises:
        ConfigError: listing `section.field must be rule, got value` for each failed check.
    """
    problems = [
        f"{section}.{name} must be {rule}, got {getattr(config, name)!r}"
        for name, rule, ok in checks
        if not ok
    ]
    if problems:
        raise config_error(problems)
