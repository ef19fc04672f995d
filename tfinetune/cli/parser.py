"""An argument parser that answers a mistake in one line, with the likely flag or command.

argparse prints its whole usage block and then `error: unrecognized arguments: --weigths`;
this parser prints one line that names the mistake and the close match ("did you mean
--weights?"), and exits with argparse's code 2. It also knows every flag it was given, so
an error message written for Python callers (`overwrite=True`) can be told in the command
line's words (`--overwrite`).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from typing import NoReturn

USAGE_ERROR = 2


class HelpWithDefaults(argparse.RawDescriptionHelpFormatter):
    """Help that ends with "(default: X)" where a flag has a default its text does not give
    (and an example under the flags, as written)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default in (None, False, argparse.SUPPRESS) or "default" in text or not text:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` with one-line errors and close-match suggestions.

    Example:
    >>> p = Parser(prog="demo")
    >>> _ = p.add_argument("--weights")
    >>> p.suggest("--weigths")
    '--weights'
    """

    def __init__(self, *args, **kwargs) -> None:
        self.commands: dict[str, Parser] = {}
        self.given: list[str] = []
        kwargs.setdefault("formatter_class", HelpWithDefaults)
        super().__init__(*args, **kwargs)

    @property
    def flags(self) -> list[str]:
        """Every flag this parser takes (those of its argument groups too)."""
        return list(self._option_string_actions)

    def parse_known_args(self, args=None, namespace=None):
        self.given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def suggest(self, word: str, choices: list[str] | None = None) -> str | None:
        """The flag (or, given `choices`, the choice) closest to a mistyped `word`."""
        options = choices or self.flags
        bare = {o.lstrip("-"): o for o in options}  # "--" alone would make flags look alike
        close = difflib.get_close_matches(word.lstrip("-"), list(bare), n=1, cutoff=0.6)
        return bare[close[0]] if close else None

    def error(self, message: str) -> NoReturn:
        command = next((self.commands[a] for a in self.given if a in self.commands), self)
        hint = ""
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if unknown:
            flags = [a for a in unknown.group(1).split() if a.startswith("-")]
            for flag in flags:
                name = flag.split("=")[0]
                close = command.suggest(name)
                where = [c for c, p in self.commands.items() if name in p.flags]
                if close:
                    hint = f" Did you mean {close}?"
                elif where and command is not self:
                    hint = f" {name} belongs to: tfinetune {' / '.join(where)}."
                if hint:
                    break
        elif choice:
            options = re.findall(r"'([^']*)'", choice.group(2))
            close = self.suggest(choice.group(1), options)
            hint = f" Did you mean {close!r}?" if close else ""
        see = f"(see {command.prog} --help)"
        self.exit(USAGE_ERROR, f"{command.prog}: error: {message}.{hint} {see}\n")

    def in_flags(self, message: str) -> str:
        """A Python-worded message in the command line's words.

        `name=True` becomes `--name`, and `name=value` (or `name=`) becomes `--name value`,
        wherever `--name` (underscores as dashes) is one of this parser's flags.

        Example:
        >>> p = Parser(prog="demo")
        >>> _ = p.add_argument("--overwrite")
        >>> _ = p.add_argument("--path-column")
        >>> p.in_flags("pass overwrite=True, or path_column='file'. Stage(overwrite=True)")
        'pass --overwrite, or --path-column file. Stage(overwrite=True)'
        """
        known = set(self.flags) | {f for c in self.commands.values() for f in c.flags}

        def replace(match: re.Match) -> str:
            name, value = match.group(1), match.group(2).strip("'\"")
            flag = ALIASES.get(name, "--" + name.replace("_", "-"))
            if flag not in known:
                return match.group(0)
            if value == "True":
                return flag
            return f"{flag} {'none' if value == 'None' else value}".rstrip()

        # An object's repr, such as Stage(epochs=-1, ...), is quoted as it is.
        parts = re.split(r"(\b[A-Z]\w*\([^()]*\))", message)
        return "".join(p if i % 2 else re.sub(PYTHON_KEYWORD, replace, p)
                       for i, p in enumerate(parts))  # fmt: skip


# name=value in a message: not part of a dotted key (stages.2.epochs=3); the value quoted, a
# <placeholder>, or a word (dots only inside it, so a sentence's full stop stays outside).
PYTHON_KEYWORD = r"(?<![.\w-])([a-z][a-z_]*)=('[^']*'|\"[^\"]*\"|<[^>]*>|[\w\-/]+(?:\.[\w\-/]+)*|)"
# Python names whose flag is not the name with dashes.
ALIASES = {"num_steps": "--steps"}
