"""What the root scripts check on the command line before Hydra starts."""

from __future__ import annotations

import sys

from sr_experiments.extras import missing_plugin

_COMPLETION_VERBS = ("install", "uninstall", "query")


def check_command_line(prog: str, argv: list[str]) -> None:
    """Exit with one line for command lines Hydra would answer with a traceback.

    ``--shell-completion`` alone (Hydra needs ``install=SHELL``), and a launcher or sweeper whose
    optional package is not installed (the message names the extra).
    """
    if any(a in ("--shell-completion", "-sc") for a in argv) and not any(
        a.split("=", 1)[0] in _COMPLETION_VERBS for a in argv
    ):
        _usage_error(
            f"{prog}: --shell-completion needs install=bash (or zsh, fish), e.g. "
            f'eval "$(python {prog} -sc install=bash)"'
        )
    problem = missing_plugin(argv)
    if problem:
        _usage_error(f"{prog}: {problem}")


def _usage_error(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    sys.exit(2)
