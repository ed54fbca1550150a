"""Named factories for every configurable component, with argument checking that names the fix.

A YAML section such as ``optimizer: {name: decoupled_adamw, lr: 5e-4}`` is built by looking up
``decoupled_adamw`` in the optimizer registry and calling its factory with the remaining keys.
Unknown names and unknown keys are errors that point at the nearest valid spelling.
"""

from __future__ import annotations

import collections.abc
import contextlib
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Union

from efficient_bert.errors import ArgumentError, ConfigError, nearest


@contextlib.contextmanager
def config_errors(where: str) -> Iterator[None]:
    """The one place where a component's own exceptions become messages about YAML keys: an
    :class:`ArgumentError` names ``<where>.<argument>``, any other ``ValueError`` or
    ``FileNotFoundError`` from building the component names ``<where>``."""
    try:
        yield
    except ConfigError:
        raise
    except ArgumentError as exc:
        raise ConfigError(f"{where}.{exc.argument}: {exc}") from exc
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def fits(value: Any, annotation: Any) -> bool:
    """Whether a YAML value fits a parameter's annotation. Types this cannot judge (classes of
    objects, strings naming a type) pass: the component's own checks see them."""
    if annotation is Any or annotation is inspect.Parameter.empty or isinstance(annotation, (str, typing.TypeVar)):
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Union or origin is types.UnionType:
        if isinstance(value, str) and any(_is_time_type(a) for a in args):
            return is_time_string(value)  # Composer's Union[str, Time]: the string is a time string
        return any(fits(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        if not isinstance(value, (list, tuple)):
            return False
        inner = [a for a in args if a is not Ellipsis]
        return len(inner) != 1 or all(fits(v, inner[0]) for v in value)  # tuple[int, str]: not judged
    if origin in (dict, collections.abc.Mapping) or annotation in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    cls = origin or annotation
    if inspect.isclass(cls):
        if _is_time_type(cls):  # a YAML value gives a Time as its string: 0.06dur, 500ba
            return isinstance(value, str) and is_time_string(value)
        return isinstance(value, cls)  # an object: no YAML value is one
    return True


def _is_time_type(annotation: Any) -> bool:
    from composer.core import Time

    cls = typing.get_origin(annotation) or annotation
    return inspect.isclass(cls) and issubclass(cls, Time)


def is_time_string(text: str) -> bool:
    """Whether Composer reads ``text`` as a time (``1000ba``, ``0.06dur``, ...)."""
    from composer.core import Time

    try:
        Time.from_timestring(text)
    except ValueError:
        return False
    return True


def describe(annotation: Any) -> str:
    if _is_time_type(annotation) or any(_is_time_type(a) for a in typing.get_args(annotation)):
        return "a Composer time string (0.06dur, 500ba, 2ep, ...)"
    if typing.get_origin(annotation) is None and hasattr(annotation, "__name__"):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def parameter_types(factory: Callable[..., Any]) -> dict[str, Any]:
    """The factory's resolved annotations (``from __future__`` strings included); empty if they cannot be resolved."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:  # an annotation naming something its module does not import at run time
        return {}


@dataclass(frozen=True)
class Entry:
    factory: Callable[..., Any]
    # Keys accepted besides the factory's named parameters (for factories taking **kwargs).
    extra_keys: Optional[frozenset[str]] = None
    # The types of those keys where known (from a config class's defaults).
    extra_types: Optional[Mapping[str, type]] = None


class Registry:
    """A name -> factory table for one kind of component (``model``, ``optimizer``, ...).

    ``context`` names the arguments the builder supplies (the model for an optimizer, ...): a
    factory receives those it names, and a YAML section may not set them.
    """

    def __init__(self, kind: str, context: Iterable[str] = ()):
        self.kind = kind
        self.context = frozenset(context)
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, factory: Callable[..., Any] | None = None, *,
                 extra_keys: Iterable[str] | Mapping[str, Any] | None = None):
        """Register ``factory`` under ``name``; usable as a decorator when ``factory`` is omitted.

        ``extra_keys`` may map each key to its default value (a config class's ``to_dict()``): a
        YAML value for a key whose default is a bool, int, float or str must then be one too."""

        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            types = None
            if isinstance(extra_keys, Mapping):
                types = {k: type(v) for k, v in extra_keys.items() if type(v) in (bool, int, float, str)}
            self._entries[name] = Entry(fn, frozenset(extra_keys) if extra_keys is not None else None, types)
            return fn

        return add(factory) if factory is not None else add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def split(self, section: Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]]:
        """A ``{name: x, **options}`` section (``model``, ``optimizer``, ``scheduler``) as its name and options."""
        options = dict(section)
        if "name" not in options:
            raise ConfigError(f"{where}.name is required; available: {', '.join(self.names())}")
        return options.pop("name"), options

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} '{name}'{nearest(name, self._entries)}; "
                              f"available: {', '.join(self.names())}")
        return self._entries[name]

    def accepted_keys(self, name: str) -> Optional[set[str]]:
        """Keys a YAML section may give for ``name``; None when the factory accepts anything."""
        entry = self.entry(name)
        params = inspect.signature(entry.factory).parameters.values()
        keys = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
        if takes_any and entry.extra_keys is None:
            return None
        return (keys | set(entry.extra_keys or ())) - self.context

    def check(self, name: str, kwargs: Mapping[str, Any] | None, *, where: str = "") -> None:
        """Raise ConfigError if ``name`` is unknown or ``kwargs`` holds an option it does not take."""
        accepted = self.accepted_keys(name)
        if accepted is None:
            return
        for key in kwargs or {}:
            if key not in accepted:
                raise ConfigError(
                    f"{where or self.kind}: {self.kind} '{name}' has no option '{key}'"
                    f"{nearest(key, accepted)}; valid options: {', '.join(sorted(accepted)) or '(none)'}")
        entry = self.entry(name)
        types = {**(entry.extra_types or {}), **parameter_types(entry.factory)}
        for key, value in (kwargs or {}).items():
            if key in types and not fits(value, types[key]):
                raise ConfigError(f"{where or self.kind}.{key}: {self.kind} '{name}' takes {describe(types[key])}, "
                                  f"got {value!r}")

    def build(self, name: str, kwargs: Mapping[str, Any] | None = None, *, where: str = "",
              **context: Any) -> Any:
        """Call the factory for ``name`` with YAML ``kwargs`` plus builder-supplied ``context``.

        ``where`` is the config path shown in error messages (e.g. ``optimizer``).
        """
        kwargs = dict(kwargs or {})
        self.check(name, kwargs, where=where)
        factory = self.entry(name).factory
        types = parameter_types(factory)
        for key, value in kwargs.items():  # YAML has lists only; a tuple parameter gets a tuple
            if isinstance(value, list) and (typing.get_origin(types.get(key)) or types.get(key)) is tuple:
                kwargs[key] = tuple(value)
        named = {p.name: p for p in inspect.signature(factory).parameters.values()
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        # Context (tokenizer, model, save_folder, ...) goes only to factories that ask for it by name.
        context = {k: v for k, v in context.items() if k in named}
        missing = [n for n, p in named.items() if p.default is p.empty and n not in kwargs and n not in context]
        if missing:
            raise ConfigError(f"{where or self.kind}: {self.kind} '{name}' needs {', '.join(missing)}")
        with config_errors(where or self.kind):
            return factory(**context, **kwargs)
