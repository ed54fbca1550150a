"""The errors a user can fix, and how their messages name the fix."""

import difflib
import errno
from typing import Iterable, Optional


class ArgumentError(ValueError):
    """``argument`` has a value the component cannot use; the message says why and what would do.

    Components know nothing of YAML: the YAML layer (:func:`efficient_bert.pretrain.registry.config_errors`)
    turns this into a message about the key, ``model.size: ...``.
    """

    def __init__(self, argument: str, message: str):
        super().__init__(message)
        self.argument = argument


class ConfigError(ValueError):
    """A configuration problem the user can fix; its message says what and how."""


class FineTuningDiverged(ValueError):
    """A fine-tuning job ended with non-finite predictions: an outcome of the checkpoint and the task's
    recipe, which running the same job again repeats."""


def nearest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def disk_full(exc: BaseException) -> Optional[OSError]:
    """The "No space left on device" error behind ``exc``, if one is: torch's checkpoint writer reports
    a full disk as a RuntimeError about file positions, raised while handling the OSError."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
