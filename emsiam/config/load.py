"""Reading a config: a preset or YAML file, then ``key=value`` overrides with dotted keys
(``optim.epochs=5``), into the typed dataclasses of :mod:`.schema`. Unknown keys and values of the
wrong type are rejected before any compute, with the closest valid keys suggested.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from .schema import ADDED_KEYS, RESUME_FREE_KEYS, Config, ConfigError
from .validate import validate

PRESET_DIR = Path(__file__).parents[1] / "presets"

#: libyaml's parser where PyYAML has it (its wheels do), else PyYAML's own. Both build the same
#: values (the resolver and constructor are PyYAML's ``SafeLoader`` parts either way); libyaml
#: parses a saved config about 15x faster, and a report reads hundreds of them.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """``yaml.safe_load(text)``, parsed by libyaml when present; errors are ``yaml.YAMLError`` as there."""
    return yaml.load(text, Loader=_SAFE_LOADER)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _check_value(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` coerced to ``tp`` or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_check_value(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        # YAML 1.1 reads 1e-3 (no dot) as a string: accept whatever Python's float() parses.
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise ConfigError(f"{key}: expected a number (e.g. 0.05, 1e-3), got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number (e.g. 0.05, 1e-3), got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "")


def _unknown(key: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key.split(".")[-1], valid, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key '{key}'.{hint} Valid keys here: {', '.join(valid)}")


def from_dict(cls: type, d: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys and bad types."""
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {d!r}")
    fields = _fields(cls)
    kwargs = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if k not in fields:
            raise _unknown(key, list(fields))
        tp = fields[k]
        kwargs[k] = from_dict(tp, v, key + ".") if _is_dataclass_type(tp) else _check_value(v, tp, key)
    cfg = cls(**kwargs)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    cur = d
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"'{key}': '{p}' is not a section")
    cur[parts[-1]] = value


def _merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_yaml(path_or_preset: str) -> dict[str, Any]:
    """Read a YAML config file, or a named preset (``cpu``, ``gpu-cifar``, ...)."""
    path = Path(path_or_preset)
    if not path.exists() and (PRESET_DIR / f"{path_or_preset}.yaml").exists():
        path = PRESET_DIR / f"{path_or_preset}.yaml"
    if not path.exists():
        raise ConfigError(
            f"config file '{path_or_preset}' not found; pass a YAML path or one of the presets: {', '.join(presets())}"
        )
    if path.is_dir():
        raise ConfigError(f"--config {path} is a directory; pass a YAML file or one of the presets: {', '.join(presets())}")
    try:
        d = safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path} is not valid YAML ({where}{problem}); fix the file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return d


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.epochs=5", "data.root=/x"]`` -> nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = safe_load(raw) if raw != "" else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override '{item}': cannot parse value ({e})") from None
        _set_dotted(out, key.strip(), value)
    return out


def load_config(config: str | None = None, overrides: list[str] | None = None) -> Config:
    """Preset/YAML file, then overrides, then validation; returns a :class:`Config`."""
    d = read_yaml(config) if config else {}
    d = _merge(d, parse_overrides(overrides or []))
    cfg = from_dict(Config, d)
    validate(cfg)
    return cfg


def diff(a: dict[str, Any], b: dict[str, Any], ignore: set[str] = RESUME_FREE_KEYS) -> list[str]:
    """Lines ``key: old -> new`` for every flattened key that differs."""
    fa, fb = flatten(a), flatten(b)
    for k, before in ADDED_KEYS.items():  # a config saved before the key existed ran with this value
        for f, other in ((fa, fb), (fb, fa)):
            if k not in f and other.get(k) == before:
                f[k] = before
    keys = sorted(set(fa) | set(fb))
    return [f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}" for k in keys if k not in ignore and fa.get(k) != fb.get(k)]
