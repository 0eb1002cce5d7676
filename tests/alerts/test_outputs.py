"""Outputs never overwrite inputs (issue 15 item 1): every output is checked against the command's
inputs and stores before anything is read, and written to a temporary file renamed into place."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import pytest

from alerts.store.sqlite import SqliteAlertStore
from sitsmon.cli import main
from sitsmon.outputs import OutputError, atomic_output, refuse_overwrite
from tests.alerts.test_inputs import good  # noqa: F401 - fixture


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err.strip()


def test_detect_refuses_an_output_that_is_an_input(good, tmp_path, capsys):  # noqa: F811
    obs, parcels = good["obs"], good["parcels"]
    before = {p: sha(p) for p in (obs, parcels)}
    base = ["detect", "--observations", str(obs), "--parcels", str(parcels)]
    link = tmp_path / "link.csv"
    os.symlink(obs, link)
    for extra, named in (
        (["--out", str(obs)], "--out"),
        (["--out", str(tmp_path / "x" / ".." / "observations.csv")], "--out"),
        (["--out", str(link)], "--out"),
        (["--out", str(tmp_path / "a.csv"), "--lights", str(parcels)], "--lights"),
    ):
        code, err = run_cli(base + extra, capsys)
        assert code == 1 and len(err.splitlines()) == 1, err
        assert f"{named} " in err and "is the same file as" in err and "refusing to overwrite an input" in err
    assert {p: sha(p) for p in (obs, parcels)} == before
    assert not (tmp_path / "a.csv").exists()


def test_detect_out_and_store_cannot_share_a_file(good, tmp_path, capsys):  # noqa: F811
    store_path = tmp_path / "A.sqlite"
    base = ["detect", "--observations", str(good["obs"]), "--parcels", str(good["parcels"])]
    assert run_cli(base + ["--out", str(tmp_path / "first.csv"), "--store", str(store_path)], capsys)[0] == 0
    with SqliteAlertStore(store_path) as store:
        n = store.count()
        store.set_status(store.query()[0].alert_id, "acknowledged", who="controller", note="seen")
    assert n > 0
    before = sha(store_path)
    code, err = run_cli(base + ["--out", str(store_path), "--store", str(store_path)], capsys)
    assert code == 1 and "--store" in err and "two outputs cannot share a file" in err
    assert sha(store_path) == before
    with SqliteAlertStore(store_path) as store:  # triage history intact
        assert store.count() == n and store.query(status="acknowledged")[0].history[-1].note == "seen"
    code, err = run_cli(base + ["--out", str(tmp_path / "o.csv"), "--store", f"sqlite:///{good['obs']}"], capsys)
    assert code == 1 and "--store" in err and "--observations" in err


def test_gapfill_refuses_an_output_that_is_an_input(good, tmp_path, capsys):  # noqa: F811
    for target in ("obs", "queries", "parcels"):
        before = sha(good[target])
        code, err = run_cli(["gapfill", "--observations", str(good["obs"]), "--parcels", str(good["parcels"]),
                             "--at", str(good["queries"]), "--out", str(good[target])], capsys)
        assert code == 1 and "refusing to overwrite an input" in err and str(good[target]) in err
        assert sha(good[target]) == before
    out = tmp_path / "filled.csv"
    code, err = run_cli(["gapfill", "--observations", str(good["obs"]), "--parcels", str(good["parcels"]),
                         "--at", str(good["queries"]), "--out", str(out)], capsys)
    assert code == 0 and len(pd.read_csv(out)) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_an_output_directory_is_refused(good, tmp_path, capsys):  # noqa: F811
    code, err = run_cli(["detect", "--observations", str(good["obs"]), "--parcels", str(good["parcels"]),
                         "--out", str(tmp_path)], capsys)
    assert code == 1 and err.endswith(f"--out {tmp_path} is a directory, expected a file")


def test_atomic_output_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("writer died")
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith("out.csv")
        tmp.write_text("new\n")
    assert target.read_text() == "new\n"


def test_refuse_overwrite_ignores_server_urls_and_missing_options(tmp_path):
    refuse_overwrite({"--store": "postgresql://u@h/db", "--lights": None}, {"--observations": str(tmp_path / "o")})
    with pytest.raises(OutputError, match="--b .* is the same file as --a"):
        refuse_overwrite({"--a": tmp_path / "x", "--b": tmp_path / "x"}, {})
