"""What the root scripts check on the command line before Hydra starts."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from sr_experiments.extras import MissingExtra, missing_plugin
from sr_experiments.outputs import OutputError, WriteError

# The one error policy of the root scripts: errors whose message tells the user what to do end the
# command with that one line. Exit codes: 2 refused (bad value, key, input or output: nothing or
# not everything could start), 1 failed while running (disk full, an I/O error), 130 Ctrl-C.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, MissingExtra)

_COMPLETION_VERBS = ("install", "uninstall", "query")


def check_command_line(prog: str, argv: list[str]) -> None:
    """Exit with one line for command lines Hydra would answer with a traceback.

    ``--shell-completion`` alone (Hydra needs ``install=SHELL``), and a launcher or sweeper whose
    optional package is not installed (the message names the extra). ``-sc install=bash|zsh``
    prints this framework's completion script (any python command word) instead of Hydra's.
    """
    if any(a in ("--shell-completion", "-sc") for a in argv) and not any(
        a.split("=", 1)[0] in _COMPLETION_VERBS for a in argv
    ):
        _usage_error(
            f"{prog}: --shell-completion needs install=bash (or zsh, fish), e.g. "
            f'eval "$(python {prog} -sc install=bash)"'
        )
    if any(a in ("--shell-completion", "-sc") for a in argv):
        from sr_experiments.completion import install_script

        shells = [a.split("=", 1)[1] for a in argv if a.startswith("install=")]
        script = install_script(shells[0]) if shells else None
        if script is not None:  # ours: also completes `.venv/bin/python train.py` (sr_experiments/completion.py)
            print(script)
            sys.exit(0)
    problem = missing_plugin(argv)
    if problem:
        _usage_error(f"{prog}: {problem}")


def _usage_error(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    sys.exit(2)


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def fail(prog: str, message: str, code: int = 2) -> NoReturn:
    """End the command with ``prog: message`` on stderr and exit ``code``."""
    print(f"{prog}: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


@contextmanager
def errors_as_one_line(prog: str) -> Iterator[None]:
    """Inside this block an error the user can act on ends the command with one line (see
    ``USER_ERRORS`` for the exit codes); ``HYDRA_FULL_ERROR=1`` re-raises it for a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        fail(prog, "interrupted", 130)
    except WriteError as e:  # a ValueError, but it failed while running (a full disk): 1, not 2
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        fail(prog, first_line(e), 1)
    except USER_ERRORS as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        # A write that failed (outputs.disk_error: a full disk, a read-only folder) failed while running.
        failed_write = isinstance(e, OutputError) and isinstance(e.__context__, OSError)
        fail(prog, first_line(e), 1 if failed_write else 2)
    except OSError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            fail(prog, f"{where}no space left on the device (free some space; resume with ckpt_path= where a "
                       "checkpoint was written)", 1)
        fail(prog, f"{where}{e.strerror or first_line(e)}", 1)
