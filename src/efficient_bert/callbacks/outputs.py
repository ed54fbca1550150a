"""Callbacks that write files a run must not replace unawares."""

from composer.core import Callback


class WritesOutputs(Callback):
    """A callback that writes files: :meth:`check_outputs` refuses, before anything is written, files it
    would replace. It runs when training starts, and a run that evaluates before its first step calls
    it first (that evaluation writes records of its own)."""

    def check_outputs(self) -> None:
        raise NotImplementedError
