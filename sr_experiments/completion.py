"""Shell completion for the root scripts however Python is invoked: ``python train.py``,
``python3 train.py``, ``.venv/bin/python train.py`` (the README's form), ``/abs/.venv/bin/python ...``.

    eval "$(.venv/bin/python -m sr_experiments.completion)"      # bash; `make completion` prints this line
    eval "$(python train.py -sc install=bash)"                    # the same script (zsh: install=zsh)

Hydra answers the completion queries (``-sc query=bash``: config groups and their options,
``model=<TAB>`` lists the models, keys, ``model.<TAB>`` the model's keys). Written here because
Hydra's own bash script completes only a command word that is exactly ``python``: for
``.venv/bin/python train.py`` it runs ``.venv/bin/python -sc query=bash``, which Python refuses,
and its query strips only the first word of such a line. This script passes Hydra the line as
``python SCRIPT ...`` and runs the query with the interpreter that was typed.
"""

from __future__ import annotations

import sys

SCRIPTS = ("train.py", "eval.py", "upscale.py", "zssr.py", "degrade.py", "export.py", "info.py")
# Command words registered: bash looks a path up as typed, then by its last component (python).
PYTHONS = ("python", "python3", ".venv/bin/python", "./.venv/bin/python")

BASH = r"""_sr_experiments_complete()
{
    COMPREPLY=()
    local line="${COMP_LINE:0:COMP_POINT}"
    local words=($line)
    local py="${words[0]}" script="${words[1]}"
    # The token being completed (model=sh), whatever COMP_WORDBREAKS splits at: bash replaces only
    # its own current word (sh after '='), so candidates lose the part of the token before it.
    local token="${line##*[[:space:]]}" word="${COMP_WORDS[COMP_CWORD]}"
    case "${script##*/}" in
        @SCRIPTS@) ;;
        *) return 1 ;;  # not one of ours: bash's default completion (file names)
    esac
    if (( ${#words[@]} < 2 )) || [[ ${#words[@]} == 2 && -n "$token" ]] || [ ! -f "$script" ]; then
        return 1
    fi
    local rest="${line#*"$script"}"
    local choices
    choices=$(COMP_LINE="python $script$rest" COMP_POINT=$(( ${#script} + ${#rest} + 8 )) \
              "$py" "$script" -sc query=bash 2>/dev/null)
    local cut=$(( ${#token} - ${#word} ))
    (( cut < 0 )) && cut=0
    local c
    for c in $(compgen -W "$choices" -- "$token"); do
        COMPREPLY+=("${c:cut}")
    done
}
complete -o nospace -o default -F _sr_experiments_complete @PYTHONS@
"""


def bash_script() -> str:
    """The bash (and zsh, through bashcompinit) completion script for the root scripts."""
    return BASH.replace("@SCRIPTS@", "|".join(SCRIPTS)).replace("@PYTHONS@", " ".join(PYTHONS))


def install_script(shell: str) -> str | None:
    """What ``SCRIPT -sc install=SHELL`` prints, or None to leave it to Hydra (fish)."""
    if shell == "bash":
        return bash_script()
    if shell == "zsh":
        return "autoload -Uz bashcompinit && bashcompinit\n" + bash_script()
    return None


if __name__ == "__main__":
    print(install_script(sys.argv[1] if len(sys.argv) > 1 else "bash") or "")
