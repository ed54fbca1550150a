"""YAML files with ``key=value`` overrides, read into a dataclass schema and validated up front.

The files merge in order, then the overrides apply; a key the schema does not declare is an error
naming the nearest valid one, and a value of the wrong type names the key. What the schemas are
(pretraining's :class:`efficient_bert.pretrain.schema.TrainConfig`, fine-tuning's
:class:`efficient_bert.eval.finetune_config.FinetuneConfig`) lives with their users.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, Sequence, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from efficient_bert.errors import ConfigError, nearest


def _section_type(tp: Any) -> Optional[type]:
    """The dataclass a field holds (unwrapping Optional), or None for free-form fields."""
    if dataclasses.is_dataclass(tp):
        return tp
    if get_origin(tp) is Union:
        inner = [a for a in get_args(tp) if a is not type(None)]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            return inner[0]
    return None


def check_keys(node: Any, schema: type, path: str = "") -> None:
    """Raise ConfigError for the first key in ``node`` that ``schema`` does not declare."""
    if not isinstance(node, (dict, DictConfig)):
        return
    hints = get_type_hints(schema)
    for key in node:
        if key not in hints:
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(f"unknown key '{where}'{nearest(str(key), hints)}; "
                              f"valid keys{' under ' + path if path else ''}: {', '.join(sorted(hints))}")
        sub = _section_type(hints[key])
        if sub is not None:
            check_keys(node[key], sub, f"{path}.{key}" if path else str(key))


def load_yaml(path: Union[str, Path]) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return OmegaConf.load(path)
    except Exception as exc:  # yaml's own errors carry line/column
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc


def merge_layers(base: DictConfig, layer: DictConfig, replaced: Sequence[str],
                 sections: Sequence[str]) -> DictConfig:
    """``layer`` on top of ``base``; the named sections in ``replaced`` are replaced, not merged
    (another optimizer's options do not apply to this one)."""
    for key in replaced:
        if key in sections and key in base:
            del base[key]
    return OmegaConf.merge(base, layer)


def merge_user_layers(paths: Sequence[Path], overrides: Sequence[str], replaced_sections: Sequence[str]) -> DictConfig:
    """The YAML files merged in order, then the ``key=value`` overrides (see :func:`load_config`)."""
    if not paths:
        raise ConfigError("no config file given")
    user = load_yaml(paths[0])
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got: {' '.join(bad)}")
    try:
        for extra in paths[1:]:
            layer = load_yaml(extra)
            user = merge_layers(user, layer, list(layer.keys()) if isinstance(layer, DictConfig) else [],
                                replaced_sections)
        whole = [o.split("=", 1)[0].strip() for o in overrides]
        return merge_layers(user, OmegaConf.from_dotlist(list(overrides)), whole, replaced_sections)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad override: {exc}") from exc


def load_config(path: Union[str, Path, Sequence[Union[str, Path]]], overrides: Sequence[str], schema: type,
                replaced_sections: Sequence[str] = ()) -> Any:
    """Load YAML files merged in order, apply ``key=value`` overrides, validate keys and types against
    the dataclass ``schema``, resolve ``${...}`` and return the schema's object.

    A section in ``replaced_sections`` that a later file or a whole-section override
    (``scheduler={name: ...}``) gives replaces the earlier one instead of merging with it; dotted keys
    (``scheduler.alpha_f=0.1``) edit it.
    """
    paths = [Path(p) for p in ([path] if isinstance(path, (str, Path)) else path)]
    check_variables(paths, overrides)
    user = merge_user_layers(paths, overrides, replaced_sections)
    source = " + ".join(str(p) for p in paths)
    check_keys(user, schema)
    try:
        base = OmegaConf.structured(schema)
        for key in replaced_sections:
            if key in user and key in base:  # the user's section replaces the default one, whose options may not apply
                base[key] = {}
        merged = OmegaConf.merge(base, user)
        OmegaConf.resolve(merged)
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ConfigError(f"{source}: required keys are not set: {', '.join(missing)}")
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        message = str(exc.msg if hasattr(exc, "msg") else exc).splitlines()[0]  # omegaconf appends its own context
        raise ConfigError(f"{origin(key, overrides, source)}: invalid value{' for ' + key if key else ''}: "
                          f"{message}") from exc


def origin(key: Optional[str], overrides: Sequence[str], source: str) -> str:
    """Where a key's value came from, for an error message: its override, else the YAML files."""
    given = [o for o in overrides if key and o.split("=", 1)[0].strip() == key]
    return f"the override {given[-1]}" if given else source


def check_variables(paths: Sequence[Path], overrides: Sequence[str]) -> None:
    """An override of ``variables.<name>`` must name a variable the YAML files define: another name
    would be set and never read, and the run would silently use the default it meant to change."""
    defined: set[str] = set()
    for path in paths:
        layer = load_yaml(path)
        if isinstance(layer, DictConfig) and isinstance(layer.get("variables"), DictConfig):
            defined.update(str(k) for k in layer["variables"])
    for override in overrides:
        key = override.split("=", 1)[0].strip()
        if key.startswith("variables."):
            name = key.split(".")[1]
            if name not in defined:
                known = ", ".join(sorted(defined)) or "none"
                raise ConfigError(f"{key}: no YAML file of this run defines the variable '{name}'"
                                  f"{nearest(name, defined)}; the variables are: {known}")
