"""Resume validation: what may change in a run's config between its checkpoint and the resumed run."""

from __future__ import annotations

from typing import Any

from spidrkit.config import Config, ModelConfig, TeacherConfig, variant_of

# The switches the variant derives from; a change of either changes what the run trains.
_SWITCHES = {("model", "heads"), ("teacher", "schedule")}


def config_changes(saved: dict[str, Any], cfg: Config) -> tuple[list[str], list[str]]:
    """Differences between a checkpoint's config (``Config.to_dict()``) and the current one: (fatal, harmless).

    The model (its shapes and variant) cannot change under a resumed run: a change in ``[model]`` or in
    ``teacher.schedule`` is fatal, and a change of variant is named first. Optimisation, data and training
    settings may change (e.g. a larger ``train.max_steps`` to train longer), and are reported. The saved
    variant is derived from the saved switches, not read from its stored label.
    """
    current = cfg.to_dict()
    current.pop("variant")
    fatal, harmless = [], []
    old_heads = (saved.get("model") or {}).get("heads", ModelConfig.heads)
    old_variant = variant_of(old_heads, (saved.get("teacher") or {}).get("schedule", TeacherConfig.schedule))
    if old_variant != cfg.variant:
        fatal.append(f"variant: {old_variant!r} -> {cfg.variant!r}")
    for section, values in current.items():
        old = saved.get(section) or {}
        for key, value in values.items():
            if old.get(key) != value:
                msg = f"{section}.{key}: {old.get(key)!r} -> {value!r}"
                (fatal if section == "model" or (section, key) in _SWITCHES else harmless).append(msg)
    return fatal, harmless
