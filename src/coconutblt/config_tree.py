"""Dataclasses as the config schema: defaults <- YAML file <- dotted `a.b=c` overrides.

One merge function serves every config in the project. An unknown key is a `UserError` that
names the key, where it came from, and the valid keys at that level.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from coconutblt.errors import ConfigValueError, UserError

T = TypeVar("T")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def merge_into(obj: T, values: dict[str, Any], where: str, source: str) -> T:
    """Return a copy of dataclass `obj` with `values` (a nested dict) applied.

    `where` is the dotted prefix of this level (for messages), `source` the file or "command
    line" the values came from.
    """
    if not isinstance(values, dict):
        raise UserError(f"{source}: '{where or 'top level'}' must be a mapping, got {values!r}")
    types = _field_types(type(obj))
    changes: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in types:
            valid = ", ".join(sorted(types))
            raise UserError(f"{source}: unknown config key '{dotted}'; valid keys here: {valid}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current) and not isinstance(current, type):
            changes[key] = merge_into(current, value, dotted, source)
        else:
            changes[key] = _coerce(value, types[key], dotted, source)
    try:  # a dataclass's own checks (`__post_init__`) name their key within it
        return dataclasses.replace(obj, **changes)
    except ConfigValueError as exc:
        raise exc.within(where, source) from None


def _coerce(value: Any, tp: Any, dotted: str, source: str) -> Any:
    """Check and convert a YAML scalar to the field's annotated type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (
        origin is not None and str(origin) == "<class 'types.UnionType'>"
    ):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], dotted, source)
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"{source}: '{dotted}' must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{source}: '{dotted}' must be a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, dotted, source) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{source}: '{dotted}' must be true or false, got {value!r}")
        return value
    if isinstance(value, str) and tp in (int, float):  # YAML reads "1e-3" as a string
        try:
            value = tp(value)
        except ValueError:
            pass
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{source}: '{dotted}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{source}: '{dotted}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            return str(value)
        return value
    return value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is a one-line `UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{path}: config file not found; give the path of a YAML file such as configs/tiny.yaml"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise UserError(
            f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)}); fix the syntax"
        ) from None
    if not isinstance(data, dict):
        raise UserError(
            f"{path}: a config file must hold a mapping of keys, got {type(data).__name__}"
        )
    return data


def dump_yaml(data: dict[str, Any]) -> str:
    """`data` as block-style YAML in key order (readable back by `read_yaml`)."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["a.b=3", "c=x"]` -> `{"a": {"b": 3}, "c": "x"}`, values parsed as YAML scalars."""
    tree: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"command line: override '{item}' must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise UserError(
                f"command line: override '{item}' is not a valid value ({problem}); close "
                "brackets and quotes, e.g. data.train=[a.json] or data.train=['my file.json']"
            ) from None
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain dict (for YAML/JSON dumps and checkpoints)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
