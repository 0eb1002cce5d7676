"""Checks of compose.yaml and the Dockerfile against the code, so that the deployment files cannot rot
while no container runs on the development machines.

:func:`compose_problems` and :func:`dockerfile_problems` return one line per problem (empty: fine).
They check what Docker itself would only find at deploy time, and what it never checks:

- every ``SITSMON_*`` variable of a sitsmon service is a setting and its value validates, through the
  settings model's own environment source (:class:`sitsmon.settings.Settings`);
- every sitsmon service's command parses with the ``sitsmon`` command line (argparse);
- every ``${VAR}`` is required (``${VAR:?why}``) or has a default, a secret never has a non-empty
  default, and no secret is written as a literal (an environment value or a URL's password);
- every long-running service has a healthcheck, ``depends_on`` conditions name services that can meet
  them, and named volumes are declared;
- the Dockerfile's ENTRYPOINT is an entry point of pyproject.toml and its CMD parses, its COPY sources
  exist.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

REPO = Path(__file__).resolve().parents[2]

# compose interpolation: $$ (a literal $), ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}, ${VAR:+a}, $VAR
_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}"
                  r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|(^|_)PASS$|(^|_)KEY$|CREDENTIAL", re.I)
_URL_PASSWORD = re.compile(r"://[^/\s:@$]+:(?P<pw>[^@\s/]+)@")
ONE_SHOT_RESTARTS = {"no", "on-failure"}


def _strings(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string of a parsed YAML tree (mapping keys included) with where it sits."""
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(str(key), where)
            yield from _strings(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{where}[{i}]")


def variable_problems(compose: Mapping[str, Any]) -> list[str]:
    """Unguarded ``${VAR}``, secrets with defaults, compose variables that would pass for settings."""
    out: list[str] = []
    for where, text in _strings(compose, "compose"):
        for m in _VAR.finditer(text):
            if m.group(0) == "$$":
                continue
            name = m.group("name") or m.group("bare")
            op, arg = m.group("op"), m.group("arg") or ""
            if op is None:
                out.append(f"{where}: ${{{name}}} has neither a default nor :? (write ${{{name}:?why}})")
            elif op.endswith("?") and not arg.strip():
                out.append(f"{where}: ${{{name}{op}}} needs a message saying what to set")
            elif op.endswith("-") and arg and _SECRET_NAME.search(name):
                out.append(f"{where}: secret ${{{name}}} has a default written in the file")
            if name.startswith("SITSMON_"):
                out.append(f"{where}: compose variable {name} starts with SITSMON_ (sitsmon would take it "
                           f"for a setting in any shell that exports it); name it without the prefix")
    return out


def _only_interpolation(value: str) -> bool:
    return bool(value) and not _VAR.sub("", value).strip()


def secret_problems(compose: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for name, service in (compose.get("services") or {}).items():
        for key, value in environment(service).items():
            if _SECRET_NAME.search(key) and value not in ("", None) and not _only_interpolation(str(value)):
                out.append(f"service {name}: {key} is written in the file (take it from the environment: ${{VAR:?}})")
    for where, text in _strings(compose, "compose"):
        for m in _URL_PASSWORD.finditer(text):
            if not _only_interpolation(m.group("pw")):
                out.append(f"{where}: a URL carries a literal password")
    return out


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose allows a list of KEY=VALUE too)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def interpolate(text: str, values: Mapping[str, str]) -> str:
    """``text`` as compose would make it with ``values`` as the environment."""
    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op") or "", m.group("arg") or ""
        have = values.get(name)
        if op == ":-":
            return have if have else arg
        if op == "-":
            return arg if have is None else have
        if op == ":+":
            return arg if have else ""
        if have is None or (op == ":?" and not have):
            raise KeyError(name)
        return have
    return _VAR.sub(one, text)


def _is_sitsmon(service: Mapping[str, Any]) -> bool:
    return "build" in service


def _cli_error(argv: list[str]) -> str | None:
    """None when ``sitsmon ARGV`` parses, else argparse's message."""
    from sitsmon.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as e:
        if e.code not in (0, None):
            return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {e.code}"
    return None


def _settings_error(env: Mapping[str, str]) -> str | None:
    """None when the sitsmon settings accept ``env`` as the whole environment, else the reason."""
    from pydantic import ValidationError

    from sitsmon.settings import Settings, SettingsError

    with mock.patch.dict(os.environ, env, clear=True):
        try:
            Settings()
        except SettingsError as e:
            return str(e)
        except ValidationError as e:
            first = e.errors()[0]
            return f"invalid setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return None


def service_problems(compose: Mapping[str, Any], samples: Mapping[str, str]) -> list[str]:
    """Settings and commands of the sitsmon services; healthchecks, depends_on and volumes of all."""
    out: list[str] = []
    services = compose.get("services") or {}
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        restart = str(service.get("restart", "no"))
        one_shot = restart in ONE_SHOT_RESTARTS
        test = (service.get("healthcheck") or {}).get("test")
        if not one_shot and not test:
            out.append(f"service {name}: long-running (restart {restart}) but has no healthcheck")
        deps = service.get("depends_on") or {}
        for dep, cond in (deps.items() if isinstance(deps, Mapping) else ((d, {}) for d in deps)):
            other = services.get(dep)
            if other is None:
                out.append(f"service {name}: depends on {dep}, which is not a service")
                continue
            condition = (cond or {}).get("condition", "service_started")
            if condition == "service_healthy" and not (other.get("healthcheck") or {}).get("test"):
                out.append(f"service {name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
            if condition == "service_completed_successfully" and str(other.get("restart", "no")) not in ONE_SHOT_RESTARTS:
                out.append(f"service {name}: waits for {dep} to complete, but {dep} restarts forever")
            if set(other.get("profiles") or ()) - set(service.get("profiles") or ()):
                out.append(f"service {name}: depends on {dep}, which only runs in profile(s) {other['profiles']}")
        for volume in service.get("volumes") or ():
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source and not source.startswith(("/", ".", "$", "~")) and source not in declared_volumes:
                out.append(f"service {name}: volume {source} is not declared under volumes:")
        env = environment(service)
        if not _is_sitsmon(service):
            stray = sorted(k for k in env if k.startswith("SITSMON_"))
            if stray:
                out.append(f"service {name}: SITSMON_* variables on a service that is not sitsmon: {stray}")
            continue
        try:
            resolved = {k: interpolate(v, samples) for k, v in env.items()}
        except KeyError as e:
            out.append(f"service {name}: required variable {e.args[0]} has no sample value in the test")
            continue
        problem = _settings_error({k: v for k, v in resolved.items() if k.startswith("SITSMON_")})
        if problem:
            out.append(f"service {name}: {problem}")
        command = service.get("command")
        if command is None:
            out.append(f"service {name}: no command (the image's CMD is `sitsmon --help`)")
            continue
        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        error = _cli_error(argv)
        if error:
            out.append(f"service {name}: command `sitsmon {' '.join(argv)}` does not parse: {error}")
    return out


def compose_problems(compose: Mapping[str, Any], samples: Mapping[str, str]) -> list[str]:
    return [*variable_problems(compose), *secret_problems(compose), *service_problems(compose, samples)]


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines: list[str] = []
    buffer = ""
    for raw in dockerfile.splitlines():
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        lines.append(buffer + stripped)
        buffer = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerfile_problems(dockerfile: str, repo: Path = REPO) -> list[str]:
    out: list[str] = []
    steps = _instructions(dockerfile)
    scripts = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["scripts"]

    def exec_form(kind: str) -> list[str] | None:
        found = [args for word, args in steps if word == kind]
        if not found:
            out.append(f"Dockerfile: no {kind}")
            return None
        try:
            value = json.loads(found[-1])
        except ValueError:
            out.append(f"Dockerfile: {kind} is not in exec (JSON) form: {found[-1]}")
            return None
        return [str(v) for v in value]

    entry = exec_form("ENTRYPOINT")
    cmd = exec_form("CMD")
    if entry is not None and (not entry or entry[0] not in scripts):
        out.append(f"Dockerfile: ENTRYPOINT {entry} is not an entry point of pyproject.toml ({sorted(scripts)})")
    if entry == ["sitsmon"] and cmd is not None:
        error = _cli_error(cmd)
        if error:
            out.append(f"Dockerfile: CMD {cmd} does not parse with the sitsmon CLI: {error}")
    for word, args in steps:
        if word == "COPY" and not args.startswith("--from"):
            *sources, _dest = shlex.split(args)
            for source in sources:
                if not source.startswith("--") and not (repo / source).exists():
                    out.append(f"Dockerfile: COPY source {source} does not exist")
    return out
