"""The task and model options every command that loads a task shares, defined once.

Help texts come from :class:`~circuitwise.config.RunConfig`'s fields, so ``run``'s config file and
each command's flags describe an option in the same words, and every help text ends with the
option's default (taken from the config, the single home of defaults). ``None`` as a typer default
means "not given": the config's default applies.
"""

from __future__ import annotations

from typing import Any

import typer
from pydantic.fields import FieldInfo

from circuitwise.config import RunConfig

F = RunConfig.model_fields


def default_text(value: Any) -> str:
    """A default as `--help` shows it: on/off for switches, a list comma-separated, 'none' for unset."""
    if value is None or value == {} or value == ():
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ", ".join(map(str, value))
    return str(value)


def with_default(text: str, default: Any) -> str:
    """``text`` ending with its default, unless it already says what the default is."""
    return text if "default" in text.lower() else f"{text} [default: {default_text(default)}]"


def field_help(field: FieldInfo, extra: str = "") -> str:
    """A config field's description (plus ``extra``) with the field's default."""
    text = f"{field.description} {extra}".strip()
    return with_default(text, field.get_default(call_default_factory=True))


def config_option(fields: dict[str, FieldInfo], name: str, *flags: str, extra: str = "", **kw: Any) -> Any:
    """A typer option whose help and default come from a config field (None = not given)."""
    return typer.Option(None, *flags, help=field_help(fields[name], extra), show_default=False, **kw)


DEVICE = config_option(F, "device", "--device")
DEVICE_MAP = config_option(F, "device_map", "--device-map")
N_DEVICES = config_option(F, "n_devices", "--n-devices")
MAX_MEMORY = config_option(F, "max_memory", "--max-memory")
DTYPE = config_option(F, "dtype", "--dtype")
N = config_option(F, "n", "--n")
SEED = config_option(F, "seed", "--seed")
CORRUPTION = config_option(F, "corruption", "--corruption")
SPLIT = config_option(F, "split", "--split")
DROP_INVALID = config_option(F, "drop_invalid", "--drop-invalid/--strict")
PROCESSING = config_option(F, "processing", "--processing/--no-processing")
METRIC = config_option(F, "metric", "--metric")
# Every command that writes a folder: a complete result of other settings is never replaced silently.
FORCE = typer.Option(False, "--force", show_default=False,
                     help="Replace a complete result of other settings in --out (without it such a folder is "
                          "refused before any work; an unfinished one of the same settings resumes). [default: off]")


# --- one name for each idea ------------------------------------------------------------------------
# Each option has one name in every command, its config field's. The spellings commands used before
# stay as hidden aliases that still work and print a deprecation warning (old → new, per command).
DEPRECATED: dict[str, dict[str, str]] = {
    "circuit": {"--method": "--circuit", "--target": "--circuit-target", "--steps": "--ig-steps",
                "--option": "--circuit-option", "--direction": "-O direction="},
    "benchmark": {"--methods": "--circuit", "--target": "--circuit-target"},
    "patch": {"--what": "--patch", "-w": "--patch"},
    "compare": {"--random-circuits": "--random-samples"},
    # Plural spellings (as MIB's own scripts and the first description of `mib` read): the same lists.
    "mib": {"--tasks": "--task", "--models": "--model", "--methods": "--circuit"},
}


def metric_name(given: str | None) -> str:
    """--metric, checked before any work (its default from config.py): an unknown name fails here."""
    from circuitwise.metrics import get_metric

    return get_metric(given or F["metric"].default).name


def alias(*flags: str, **kw: Any) -> Any:
    """A deprecated spelling: hidden from --help and the README table, still accepted (see :func:`merge`)."""
    return typer.Option(None, *flags, hidden=True, **kw)


def merge(new_value: Any, old_value: Any, *, old: str, new: str) -> Any:
    """The value given under ``new``, or under its deprecated spelling ``old`` (with a warning); both is an
    error unless they agree."""
    from circuitwise.errors import ConfigError

    if old_value is None or old_value == []:
        return new_value
    from circuitwise.cli import warn

    warn(f"{old} is deprecated; use {new} (the same option, named as in every command and in config.yaml).")
    if new_value not in (None, []) and new_value != old_value:
        raise ConfigError(f"{old} and {new} are the same option, given different values; give {new} only.")
    return old_value
