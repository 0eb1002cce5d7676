"""Outputs never overwrite inputs: the one check and the one way to write a command's output file.

- :func:`refuse_overwrite` runs before a command reads anything: every output (``--out``,
  ``--lights``, ``--store``, …) is resolved (``os.path.realpath``: symlinks, ``..``, relative paths)
  and refused when it is one of the command's inputs or stores, or another of its outputs, or a
  directory.
- :func:`atomic_output` yields a temporary path beside the target (same folder, so the rename is
  atomic; same suffixes, so writers that pick a format or compression by suffix behave alike) and
  renames it into place only when the writer finished; a failure leaves the old file untouched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


class OutputError(ValueError):
    """An output would overwrite an input, another output, or a directory."""


def _is_url(value: str) -> bool:
    return "://" in value and not value.startswith("sqlite:///")


def local_path(value: str | os.PathLike[str]) -> str | None:
    """The real path of a file argument (``sqlite:///x`` → ``x``); None for a server URL."""
    text = os.fspath(value)
    if _is_url(text):
        return None
    if text.startswith("sqlite:///"):
        text = text.removeprefix("sqlite:///")
    if text == ":memory:":
        return None
    return os.path.realpath(os.path.expanduser(text))


def refuse_overwrite(outputs: Mapping[str, str | os.PathLike[str] | None],
                     inputs: Mapping[str, str | os.PathLike[str] | None]) -> None:
    """Raise OutputError (one line, naming both options and the file) when an output resolves to an
    input, to another output, or to a directory. ``None`` entries are ignored; keys are option names."""
    seen: dict[str, str] = {}
    for option, value in inputs.items():
        if value is not None and (real := local_path(value)) is not None:
            seen.setdefault(real, option)
    taken: dict[str, str] = {}
    for option, value in outputs.items():
        if value is None:
            continue
        real = local_path(value)
        if real is None:
            continue
        if os.path.isdir(real):
            raise OutputError(f"{option} {value} is a directory, expected a file")
        if real in seen:
            raise OutputError(f"{option} {value} is the same file as {seen[real]}: refusing to overwrite an input")
        if real in taken:
            raise OutputError(f"{option} {value} is the same file as {taken[real]}: two outputs cannot share a file")
        taken[real] = option


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write to the yielded temporary path; on success it is fsynced and renamed onto ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex[:12]}-{target.name}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
