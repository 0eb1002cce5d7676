"""The subcommands of ``sitsmon``, one module each (:mod:`sitsmon.cli` lists them). A command's module
docstring says what it does: its first paragraph for a reader of the code, the rest is the
description ``sitsmon <command> --help`` prints."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from sitsmon.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def doc_paragraphs(doc: str | None) -> list[str]:
    """The paragraphs of a command module's docstring after its first (each joined into one line)."""
    return [" ".join(p.split()) for p in (doc or "").split("\n\n")[1:] if p.strip()]


def add_command(sub: argparse._SubParsersAction, name: str, run: Handler, *, help: str,
                description: str) -> argparse.ArgumentParser:
    """The parser of one command, listed with ``help``, its ``--help`` saying ``description``, and
    ``run(args, settings) -> exit status`` as what it runs."""
    parser = sub.add_parser(name, help=help, description=description)
    parser.set_defaults(handler=run)
    return parser
