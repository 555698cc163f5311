"""Typed, validated run configuration: a tree of dataclasses (``schema``), read from a preset or
YAML file plus ``key=value`` overrides (``load``), checked before any compute (``validate``)."""

from .load import (PRESET_DIR, diff, flatten, from_dict, load_config, parse_overrides, presets, read_yaml, safe_load,
                   to_dict)
from .schema import (ADDED_KEYS, RESUME_FREE_KEYS, Config, ConfigError, DataConfig, DeviceError, EvalConfig,
                     LogConfig, MethodConfig, ModelConfig, OptimConfig, default_run_name)
from .validate import k_epochs, validate

__all__ = [
    "ADDED_KEYS", "PRESET_DIR", "RESUME_FREE_KEYS", "Config", "ConfigError", "DataConfig", "DeviceError",
    "EvalConfig", "LogConfig", "MethodConfig", "ModelConfig", "OptimConfig", "default_run_name", "diff",
    "flatten", "from_dict", "k_epochs", "load_config", "parse_overrides", "presets", "read_yaml", "safe_load",
    "to_dict", "validate",
]
