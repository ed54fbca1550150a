"""Named factories for every configurable component, with argument checking that names the fix.

A YAML section such as ``optimizer: {name: decoupled_adamw, lr: 5e-4}`` is built by looking up
``decoupled_adamw`` in the optimizer registry and calling its factory with the remaining keys.
Unknown names and unknown keys are errors that point at the nearest valid spelling.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional


class ConfigError(ValueError):
    """A configuration problem the user can fix; its message says what and how."""


def nearest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


@dataclass(frozen=True)
class Entry:
    factory: Callable[..., Any]
    # Keys accepted besides the factory's named parameters (for factories taking **kwargs).
    extra_keys: Optional[frozenset[str]] = None


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
                 extra_keys: Iterable[str] | None = None):
        """Register ``factory`` under ``name``; usable as a decorator when ``factory`` is omitted."""

        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = Entry(fn, frozenset(extra_keys) if extra_keys is not None else None)
            return fn

        return add(factory) if factory is not None else add

    def names(self) -> list[str]:
        return sorted(self._entries)

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

    def build(self, name: str, kwargs: Mapping[str, Any] | None = None, *, where: str = "",
              **context: Any) -> Any:
        """Call the factory for ``name`` with YAML ``kwargs`` plus builder-supplied ``context``.

        ``where`` is the config path shown in error messages (e.g. ``optimizer``).
        """
        kwargs = dict(kwargs or {})
        self.check(name, kwargs, where=where)
        factory = self.entry(name).factory
        named = {p.name: p for p in inspect.signature(factory).parameters.values()
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        # Context (tokenizer, model, save_folder, ...) goes only to factories that ask for it by name.
        context = {k: v for k, v in context.items() if k in named}
        missing = [n for n, p in named.items() if p.default is p.empty and n not in kwargs and n not in context]
        if missing:
            raise ConfigError(f"{where or self.kind}: {self.kind} '{name}' needs {', '.join(missing)}")
        return factory(**context, **kwargs)
