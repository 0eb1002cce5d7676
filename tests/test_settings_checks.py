"""Settings typos are errors (issue 15 item 8) and ``--config`` is a pydantic-settings source, not an
environment variable written behind the user's back (issue 14 item 10)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import BaseModel

from sitsmon.cli import main
from sitsmon.settings import (
    Settings,
    SettingsError,
    check_environment,
    check_keys,
    get_settings,
    setting_names,
)

pytestmark = pytest.mark.usefixtures("fresh_settings")


def cli_error(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err.strip()


STATUS = ["ingest", "status", "--ledger"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[alerts]\nstore = "x.sqlite"\n', "unknown setting key [alerts] store in {f}; did you mean store_url?"),
        ('[paths]\ndata_dri = "elsewhere"\n', "unknown setting key [paths] data_dri in {f}; did you mean data_dir?"),
        ('[bsu]\nbackend = "memory"\n', "unknown setting section bsu in {f}; did you mean bus?"),
        ('[stac\nport = 1\n', "malformed TOML in configuration file {f}"),
        ('[stac]\nport = 99999\n', "invalid setting stac.port"),
        ('[dashboard]\nport = 0\n', "invalid setting dashboard.port"),
        ('[bus]\nbootstrap_servers = "127.0.0.1:70000"\n', "invalid setting bus.bootstrap_servers"),
        ('[bus]\nsession_timeout_s = 0.5\n', "invalid setting bus.session_timeout_s"),
        ('[bus]\nmax_poll_interval_s = 0\n', "invalid setting bus.max_poll_interval_s"),
        ('paths = "x"\n', "setting paths in {f} must be a table"),
    ],
)
def test_bad_files_name_the_file_and_the_setting(tmp_path, capsys, text, message):
    config = tmp_path / "sitsmon.toml"
    config.write_text(text)
    code, err = cli_error(["--config", str(config), *STATUS, str(tmp_path / "l.sqlite")], capsys)
    assert code == 1 and len(err.splitlines()) == 1
    assert message.format(f=config) in err, err
    assert not (tmp_path / "l.sqlite").exists()


def test_unknown_environment_variable_named_with_the_nearest(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SITSMON_PAHTS__DATA_DIR", str(tmp_path))
    code, err = cli_error([*STATUS, str(tmp_path / "l.sqlite")], capsys)
    assert code == 1 and "unknown environment variable SITSMON_PAHTS__DATA_DIR; did you mean SITSMON_PATHS__DATA_DIR?" in err
    monkeypatch.delenv("SITSMON_PAHTS__DATA_DIR")
    get_settings.cache_clear()
    monkeypatch.setenv("SITSMON_PATHS__DATA_DIR", str(tmp_path))  # the right name still works
    monkeypatch.setenv("SITSMON_SERVICES_DIR", "/x")  # not a setting, but a known variable
    assert get_settings().paths.data_dir == tmp_path


def test_ports_zero_means_any_free_port_only_where_meant(tmp_path):
    config = tmp_path / "ok.toml"
    config.write_text("[stac]\nport = 0\n[dashboard]\nport = 65535\n")
    s = get_settings(str(config))
    assert s.stac.port == 0 and s.dashboard.port == 65535


def test_valid_names_derive_from_the_model():
    """A section another engineer adds to Settings is known without editing any list."""

    class MonitorSettings(BaseModel):
        checkpoint_every: int = 10

    class Extended(Settings):
        monitor: MonitorSettings = MonitorSettings()

    assert ("monitor", "checkpoint_every") in setting_names(Extended)
    check_keys({"monitor": {"checkpoint_every": 5}}, "f.toml", Extended)
    with pytest.raises(SettingsError, match=r"\[monitor\] checkpoint_evry in f.toml; did you mean checkpoint_every"):
        check_keys({"monitor": {"checkpoint_evry": 5}}, "f.toml", Extended)
    check_environment({"SITSMON_MONITOR__CHECKPOINT_EVERY": "3"}, Extended)
    with pytest.raises(SettingsError, match="SITSMON_MONITOR__CHECKPOINT_EVERY"):
        check_environment({"SITSMON_MONITOR__CHECKPOINT_EVRY": "3"}, Extended)


class _NoWrites(dict):
    def __setitem__(self, key, value):
        raise AssertionError(f"settings wrote os.environ[{key!r}]")

    def pop(self, *args):
        raise AssertionError("settings removed an environment variable")


def test_config_is_a_settings_source_not_an_environment_write(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[bus]\ngroup_id = "from-file"\n')
    real = os.environ
    os.environ = _NoWrites(real)  # noqa: B003 - only while the settings load (pytest writes os.environ)
    try:
        s = get_settings(str(config))
    finally:
        os.environ = real  # noqa: B003
    assert s.bus.group_id == "from-file" and isinstance(s, Settings)
    assert "SITSMON_CONFIG" not in os.environ


def test_sitsmon_config_and_nested_variables_keep_working(tmp_path, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text('[bus]\ngroup_id = "from-file"\nbackend = "kafka"\n')
    monkeypatch.setenv("SITSMON_CONFIG", str(config))
    monkeypatch.setenv("SITSMON_BUS__GROUP_ID", "from-env")
    s = get_settings()
    assert s.bus.group_id == "from-env" and s.bus.backend == "kafka"


def test_a_directory_as_config_file(tmp_path: Path, capsys):
    code, err = cli_error(["--config", str(tmp_path), *STATUS, str(tmp_path / "l.sqlite")], capsys)
    assert code == 1 and f"configuration file {tmp_path} is a directory, expected a file" in err


@pytest.mark.parametrize("backend", ["memory", "kafka"])
def test_bus_timeouts_reach_the_monitor_bus(tmp_path, monkeypatch, backend):
    """``[bus] session_timeout_s`` / ``max_poll_interval_s``: the failover time an operator sets is the
    one the monitor's bus is made with, on both backends."""
    import monitor.bus
    from sitsmon.commands.monitor import make_bus

    made = {}
    monkeypatch.setattr(monitor.bus, "KafkaBus", lambda servers, **kw: made.update(kw) or kw)
    config = tmp_path / "c.toml"
    config.write_text(f'[bus]\nbackend = "{backend}"\nsession_timeout_s = 4\nmax_poll_interval_s = 60\n')
    bus = make_bus(get_settings(str(config)), tmp_path)
    if backend == "memory":
        made = {"session_timeout_s": bus.session_timeout_s, "max_poll_interval_s": bus.max_poll_interval_s}
        bus.close()
    assert (made["session_timeout_s"], made["max_poll_interval_s"]) == (4.0, 60.0)
