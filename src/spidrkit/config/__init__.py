"""Run configuration: frozen dataclasses, read from TOML, with ``section.key=value`` overrides.

- :mod:`~spidrkit.config.schema`: the sections, :data:`SAMPLE_RATE`, the variant derived from
  ``model.heads`` and ``teacher.schedule`` (:func:`variant_of`, :func:`with_variant`);
- :mod:`~spidrkit.config.reading`: presets, TOML files, stored dicts, overrides (:func:`load_config`);
- :mod:`~spidrkit.config.validation`: the checks every config passes; :mod:`~spidrkit.config.writing`:
  dict and TOML out. :class:`ConfigError` names the key that is wrong.
"""

from spidrkit.config.errors import ConfigError
from spidrkit.config.reading import (
    PRESETS,
    apply_overrides,
    config_from_dict,
    from_dict,
    load_config,
    parse_override,
    preset_path,
    variant_tables,
)
from spidrkit.config.schema import (
    SAMPLE_RATE,
    SECTIONS,
    VARIANTS,
    Config,
    DataConfig,
    MaskingConfig,
    ModelConfig,
    OptimConfig,
    TeacherConfig,
    TrainConfig,
    variant_of,
    with_variant,
)
from spidrkit.config.validation import validate
from spidrkit.config.writing import to_dict, to_toml

__all__ = [
    "PRESETS",
    "SAMPLE_RATE",
    "SECTIONS",
    "VARIANTS",
    "Config",
    "ConfigError",
    "DataConfig",
    "MaskingConfig",
    "ModelConfig",
    "OptimConfig",
    "TeacherConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "from_dict",
    "load_config",
    "parse_override",
    "preset_path",
    "to_dict",
    "to_toml",
    "validate",
    "variant_of",
    "variant_tables",
    "with_variant",
]
