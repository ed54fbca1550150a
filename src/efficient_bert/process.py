"""Ending a finished process quickly."""

import atexit
import os
import sys
from typing import NoReturn


def exit_process(code: int) -> NoReturn:
    """End a finished run's process: the exit handlers run (loader workers, shared memory), then the
    process ends without the interpreter's teardown of every module and object, which takes seconds
    after importing Composer and which nothing a run wrote depends on. Non-daemon threads are not
    waited for: a run has closed its trainer (loggers, uploads) before this."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
