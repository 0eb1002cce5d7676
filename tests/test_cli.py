"""The command line and the settings: one entry point, TOML + SITSMON_* overrides, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sitsmon.cli import COMMAND_MODULES, build_parser, main
from sitsmon.settings import SettingsError, get_settings

pytestmark = pytest.mark.usefixtures("fresh_settings")


def test_every_command_has_help(capsys) -> None:
    parser = build_parser()
    for name in COMMAND_MODULES:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0
        assert name in capsys.readouterr().out


def test_settings_from_toml_then_environment(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "sitsmon.toml"
    config.write_text('[bus]\nbackend = "kafka"\ngroup_id = "from-toml"\n[stac]\nport = 9100\n')
    settings = get_settings(str(config))
    assert settings.bus.backend == "kafka" and settings.bus.group_id == "from-toml"
    assert settings.stac.port == 9100

    get_settings.cache_clear()
    monkeypatch.setenv("SITSMON_BUS__GROUP_ID", "from-env")
    monkeypatch.setenv("SITSMON_STAC__PORT", "9200")
    settings = get_settings(str(config))
    assert settings.bus.group_id == "from-env"  # the environment wins over the file
    assert settings.stac.port == 9200
    assert settings.bus.backend == "kafka"  # the rest still comes from the file


def test_settings_config_from_environment_variable(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "other.toml"
    config.write_text('[dashboard]\nport = 8123\n')
    monkeypatch.setenv("SITSMON_CONFIG", str(config))
    assert get_settings().dashboard.port == 8123


@pytest.mark.parametrize(
    "text, message",
    [
        ('[bus]\nbackend = "rabbit"\n', "bus.backend"),
        ('[stac]\nport = "eighty"\n', "stac.port"),
        ('[nonsense]\nx = 1\n', "nonsense"),
    ],
)
def test_invalid_settings_name_the_setting(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=message):
        get_settings(str(config))


def test_missing_config_file_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    code = main(["--config", str(tmp_path / "absent.toml"), "stac", "search", "--url", "http://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "configuration file not found" in err


def test_console_script_is_installed() -> None:
    out = subprocess.run([str(Path(sys.executable).parent / "sitsmon"), "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("sitsmon ")


def test_import_layers_hold() -> None:
    """The pipeline's stages import one way (import-linter contracts in pyproject.toml)."""
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
                            capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stdout[-2000:]
