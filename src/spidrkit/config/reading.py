"""A config in: from a preset or TOML file, a nested dict (stored in a checkpoint), and overrides.

A config is built from a preset (``base``: the paper's Table 5; ``base_release``: the authors' release;
``tiny``: a CPU-sized model) or a TOML file, then from a variant (``spidr`` or ``dinosr``), then from
``section.key=value`` overrides, in that order. Unknown keys and values of the wrong type are errors that
name the key.

Variant tables: a preset or file may hold a ``[dinosr]`` (or ``[spidr]``) table of sections, e.g.
``[dinosr.model] layerdrop = 0.05`` in ``base_release`` (the release's DinoSR differs from its SpidR
beyond the two switches). The table applies on top of the file whenever that variant is chosen on it:
``--variant dinosr``, ``--set variant=dinosr``, or a file built on it (``preset = "base_release"``) that
says ``variant = "dinosr"``; keys set by that file or by ``--set`` still win. :func:`variant_tables`
gives a preset's tables.

``variant`` in a file or dict is read against the switches it derives from (:mod:`spidrkit.config.schema`):

- ``"spidr"``/``"dinosr"`` first sets both switches, then the file's own keys apply; the result must still
  be that variant. A file that says ``variant = "dinosr"`` and sets ``teacher.schedule = "exponential"``
  is a :class:`ConfigError` (drop ``variant``, or write the derived label it names);
- the label of a mixed pair (``"dinosr-exponential-teacher"``, as :meth:`Config.to_toml` writes it) must
  match the switches of the file;
- in a stored config (:func:`config_from_dict`: checkpoints, run folders), the switches are what the run
  trained with: a ``variant`` that contradicts them is ignored with a warning (spidrkit versions that
  stored the variant apart from the switches left the old label on ablation runs).

Overrides (``--set``) apply in order after the file: ``--set variant=dinosr`` sets both switches, and a
later ``--set model.heads=per_layer`` changes one of them (the variant then follows the switches).
"""

from __future__ import annotations

import contextlib
import tomllib
import types
import typing
import warnings
from dataclasses import fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from spidrkit.config.errors import ConfigError
from spidrkit.config.schema import SECTIONS, VARIANTS, Config, variant_of, with_variant
from spidrkit.config.validation import HEADS, SCHEDULES
from spidrkit.errors import did_you_mean, naming
from spidrkit.text_in import read_text

PRESETS = ("base", "base_release", "tiny")
_LABELS = {variant_of(h, s) for h in HEADS for s in SCHEDULES}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert one value to the annotated type; errors name the key."""
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{key}: unsupported type {tp}")
    raise ConfigError(f"{key}: unsupported type {tp}")


def build_section(cls: type, values: dict[str, Any], section: str, base: Any) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    changes = {}
    for k, v in values.items():
        if k not in known:
            hint = did_you_mean(k, sorted(known), prefix=f"{section}.")
            raise ConfigError(f"unknown key '{section}.{k}'{hint}; known keys in [{section}]: "
                              f"{', '.join(sorted(known))}")
        changes[k] = _coerce(v, hints[k], f"{section}.{k}")
    return replace(base, **changes)


def _apply_sections(data: dict[str, Any], base: Config) -> Config:
    changes: dict[str, Any] = {}
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section '{section}'{did_you_mean(section, SECTIONS)}; known sections: "
                              f"variant, {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table of keys, got {values!r}")
        cls = typing.get_type_hints(Config)[section]
        changes[section] = build_section(cls, values, section, getattr(base, section))
    return replace(base, **changes)


def _read_with_variant(data: dict[str, Any], base: Config, stored_config: bool) -> Config:
    """``data`` on top of ``base``, its ``variant`` (if any) checked against the switches it ends with."""
    data = dict(data)
    stored = data.pop("variant", None)
    if stored is not None and not isinstance(stored, str):
        raise ConfigError(f"variant: expected a string, got {stored!r}")
    if stored is not None and stored not in _LABELS:
        raise ConfigError(f"variant: expected one of {', '.join(VARIANTS)}, got {stored!r}")
    cfg = _apply_sections(data, with_variant(base, stored) if stored in VARIANTS else base)
    if stored is None or stored == cfg.variant:
        return cfg
    switches = f"model.heads = {cfg.model.heads!r} and teacher.schedule = {cfg.teacher.schedule!r}"
    if stored_config:
        warnings.warn(
            f"stored config: variant {stored!r} contradicts its switches ({switches}), which make it "
            f"{cfg.variant!r}; the switches are what the run used, the stored label is ignored",
            stacklevel=3,
        )
        return cfg
    raise ConfigError(
        f"variant: {stored!r} contradicts {switches}, which make {cfg.variant!r}; the variant is derived "
        f"from those two switches: drop 'variant' or write variant = {cfg.variant!r}"
    )


def from_dict(data: dict[str, Any], base: Config | None = None) -> Config:
    """Apply a nested dict (as read from TOML) on top of ``base`` (defaults: the ``base`` preset); a
    ``variant`` that contradicts the switches is a :class:`ConfigError` (see the module docstring)."""
    return _read_with_variant(data, base or Config(), stored_config=False)


def config_from_dict(d: dict[str, Any]) -> Config:
    """Inverse of :meth:`Config.to_dict` (used to restore the config stored in a checkpoint); a stored
    ``variant`` that contradicts the switches is ignored with a warning (see the module docstring)."""
    return _read_with_variant(d, Config(), stored_config=True)


def parse_override(text: str) -> tuple[str, Any]:
    """``section.key=value`` -> (``section.key``, value parsed as a TOML value, else a string)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except (ValueError, RecursionError):  # (TOMLDecodeError is a ValueError)
        value = raw  # bare strings: --set data.train_manifest=/path/train.csv
    return key, value


def nest_overrides(overrides: list[str] | tuple[str, ...], top_level: tuple[str, ...] = ()
                   ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``section.key=value`` overrides as ``{section: {key: value}}``, and the keys named in ``top_level``
    (``variant``: no section) apart; the last of a repeated key wins."""
    nested: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for text in overrides:
        key, value = parse_override(text)
        if key in top_level:
            top[key] = value
            continue
        parts = key.split(".")
        if len(parts) != 2:
            raise ConfigError(f"override key {key!r} must be section.key (e.g. optim.lr)")
        nested.setdefault(parts[0], {})[parts[1]] = value
    return nested, top


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """``variant=NAME`` sets both switches, then every ``section.key=value`` applies."""
    nested, top = nest_overrides(overrides, ("variant",))
    variant = top.get("variant")
    if variant is not None:
        cfg = with_variant(cfg, variant)
    return _apply_sections(nested, cfg)


def read_toml(path: Path) -> dict[str, Any]:
    """The table of a TOML file (UTF-8, a BOM allowed); malformed TOML is a :class:`ConfigError` naming the
    file and, from tomllib, the line."""
    text = read_text(path, ConfigError)
    try:
        return tomllib.loads(text)
    except ValueError as e:  # tomllib.TOMLDecodeError, and an integer of more digits than Python converts
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None


def naming_file(source: str | Path, presets) -> contextlib.AbstractContextManager:
    """Config errors raised in the block start with the file they come from (``FILE: section.key: ...``);
    those of a preset (``source`` one of ``presets``) are left as they are."""
    return contextlib.nullcontext() if isinstance(source, str) and source in presets else naming(source)


def preset_path(name: str) -> Path:
    return Path(str(resources.files("spidrkit") / "configs" / f"{name}.toml"))


def read_source(source: str | Path, presets, prefix: str = "", what: str = "config") -> dict[str, Any]:
    """The TOML table of a preset name (one of ``presets``, read from the packaged ``PREFIX + name``) or of a
    TOML file; a missing file is a :class:`ConfigError` naming it and the presets."""
    if isinstance(source, str) and source in presets:
        return read_toml(preset_path(prefix + source))
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"no {what} file {path} (presets: {', '.join(presets)})")
    return read_toml(path)


def load_config(
    source: str | Path = "base",
    overrides: list[str] | tuple[str, ...] = (),
    variant: str | None = None,
) -> Config:
    """Build a config from a preset name or TOML path, a variant, then ``section.key=value`` overrides.

    A TOML file may start with ``preset = "tiny"`` to build on a preset; a variant given in the file
    (``variant = "dinosr"``) sets the heads and the teacher schedule before the file's own keys.
    """
    data = read_source(source, PRESETS)
    with naming_file(source, PRESETS):
        cfg, tables = _from_file_data(data)
    rest = []
    for text in overrides:  # ``--set variant=NAME`` wins over ``--variant`` (the last one given wins)
        key, value = parse_override(text)
        if key == "variant":
            variant = value
        else:
            rest.append(text)
    if variant is not None:
        cfg = _select_variant(cfg, variant, tables)
    return apply_overrides(cfg, rest)


def _select_variant(cfg: Config, variant: Any, tables: dict[str, dict[str, Any]]) -> Config:
    """Both switches of ``variant``, then its table (if the preset has one)."""
    return _apply_sections(tables.get(variant, {}), with_variant(cfg, variant))


def variant_tables(source: str | Path) -> dict[str, dict[str, Any]]:
    """The variant tables of a preset name or TOML file, its parents' included ({} when none)."""
    path = preset_path(source) if isinstance(source, str) and source in PRESETS else Path(source)
    with naming_file(source, PRESETS):
        return _from_file_data(read_toml(path))[1]


def _from_file_data(data: dict[str, Any]) -> tuple[Config, dict[str, dict[str, Any]]]:
    """The config of a file's data (its parent preset first) and its variant tables (the parent's, then its own)."""
    data = dict(data)
    parent = data.pop("preset", None)
    own = {name: data.pop(name) for name in VARIANTS if name in data}
    for name, table in own.items():
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table of sections (e.g. [{name}.model]), got {table!r}")
    if parent is not None:
        if parent not in PRESETS:
            raise ConfigError(f"preset: expected one of {', '.join(PRESETS)}, got {parent!r}")
        cfg, tables = _from_file_data(read_toml(preset_path(parent)))
    else:
        cfg, tables = Config(), {}
    chosen = data.get("variant")
    chosen = chosen if isinstance(chosen, str) else None  # (another type is refused by from_dict below)
    if chosen in VARIANTS:
        cfg = _select_variant(cfg, chosen, tables)
    cfg = from_dict(data, cfg)
    for name, table in own.items():
        merged = tables.setdefault(name, {})
        for section, values in table.items():
            merged[section] = {**merged.get(section, {}), **(values if isinstance(values, dict) else {})}
        _apply_sections(table, with_variant(cfg, name))  # checked now: a typo fails without the variant too
    if chosen in own:
        cfg = _apply_sections(own[chosen], cfg)
    return cfg, tables
