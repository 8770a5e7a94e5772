"""``cloister completion bash|zsh|fish``: a shell completion script, made from the parser.

The script is static (no Python runs on TAB): for every command path it
knows the subcommands (and positional choices) and the options, and for an
option with choices (``-o json``) its values.  Commands other engineers add
appear without any change here.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

SHELLS = ("bash", "zsh", "fish")
Tree = dict[str, tuple[list[str], list[str]]]


def _children(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def command_tree(parser: argparse.ArgumentParser, path: str = "") -> Tree:
    """``{"session create": ([words], [options]), …}`` for every command path."""
    words: list[str] = []
    options: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            words += list(action.choices)
        elif action.option_strings:
            if action.help is not argparse.SUPPRESS:
                options += [o for o in action.option_strings if o.startswith("--")] or list(
                    action.option_strings)
        elif action.choices:
            words += [str(c) for c in action.choices]
    tree: Tree = {path: (words, sorted(set(options)))}
    for name, child in _children(parser):
        tree.update(command_tree(child, f"{path} {name}".strip()))
    return tree


def option_values(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Every option with choices, anywhere in the tree, and its choices."""
    found: dict[str, list[str]] = {}
    for action in parser._actions:
        if action.option_strings and action.choices:
            for opt in action.option_strings:
                found[opt] = [str(c) for c in action.choices]
    for _, child in _children(parser):
        found.update(option_values(child))
    return found


def _case_bash(tree: Tree, index: int) -> str:
    arms = "\n".join(f'        "{path}") echo "{" ".join(entry[index])}" ;;'
                     for path, entry in sorted(tree.items()))
    return f'    case "$1" in\n{arms}\n    esac'


def bash_script(parser: argparse.ArgumentParser) -> str:
    tree, values = command_tree(parser), option_values(parser)
    value_arms = "\n".join(f'        {opt}) echo "{" ".join(choices)}" ;;'
                           for opt, choices in sorted(values.items()))
    return f"""\
# bash completion for cloister; load it with: source <(cloister completion bash)
_cloister_words() {{
{_case_bash(tree, 0)}
}}
_cloister_options() {{
{_case_bash(tree, 1)}
}}
_cloister_values() {{
    case "$1" in
{value_arms}
    esac
}}
_cloister() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" path="" word i
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        case "$word" in -*) continue ;; esac
        case " $(_cloister_words "$path") " in
            *" $word "*) path="${{path:+$path }}$word" ;;
        esac
    done
    local choices
    choices="$(_cloister_values "$prev")"
    if [[ -n "$choices" ]]; then
        COMPREPLY=($(compgen -W "$choices" -- "$cur"))
    elif [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$(_cloister_options "$path")" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$(_cloister_words "$path")" -- "$cur"))
    fi
}}
complete -o default -F _cloister cloister
"""


def zsh_script(parser: argparse.ArgumentParser) -> str:
    return ("#compdef cloister\n# zsh completion for cloister; load it with: "
            "source <(cloister completion zsh)\nautoload -U +X bashcompinit && bashcompinit\n"
            + bash_script(parser))


def fish_script(parser: argparse.ArgumentParser) -> str:
    tree, values = command_tree(parser), option_values(parser)

    def switch(index: int) -> str:
        arms = "\n".join(
            f"        case '{path}'\n            printf '%s\\n' {' '.join(entry[index])}"
            for path, entry in sorted(tree.items()) if entry[index])
        return f'    switch "$argv[1]"\n{arms}\n    end'

    value_lines = "\n".join(
        f"complete -c cloister -x -l {opt[2:]} -a '{' '.join(choices)}'"
        for opt, choices in sorted(values.items()) if opt.startswith("--"))
    return f"""\
# fish completion for cloister; save it as ~/.config/fish/completions/cloister.fish
function __cloister_words
{switch(0)}
end
function __cloister_options
{switch(1)}
end
function __cloister_path
    set -l path
    for word in (commandline -opc)[2..-1]
        string match -q -- '-*' $word; and continue
        if contains -- $word (__cloister_words (string join ' ' $path))
            set path $path $word
        end
    end
    string join ' ' $path
end
function __cloister_has_words
    test (count (__cloister_words (__cloister_path))) -gt 0
end
complete -c cloister -f -n __cloister_has_words -a '(__cloister_words (__cloister_path))'
complete -c cloister -n 'string match -q -- "-*" (commandline -ct)' \\
    -a '(__cloister_options (__cloister_path))'
{value_lines}
"""


def _completion(args: argparse.Namespace) -> int:
    from cloister.cli._main import build_parser  # noqa: PLC0415 — the whole tree, on demand

    parser = build_parser()
    script = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[args.shell](parser)
    print(script, end="")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "completion", help="print a shell completion script (bash, zsh, fish)",
        description="Print the completion script for SHELL on stdout: every command, "
        "subcommand and option, and the values of options with choices.",
    )
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    p.set_defaults(func=_completion)
