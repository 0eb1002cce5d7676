"""Bad interchange input at every entry point (issue 15 items 4, 5, 9): one rule, one-line messages
naming the file and the lines, earlier data intact.

The same bad files go to ``detect``, ``gapfill``, ``eval`` and ``ingest import``; the offline commands
refuse the file, the importer stores the good rows and lists the rejected lines.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contracts.interchange import check_observations, drop_duplicates, read_table
from ingest.series import read_series
from sitsmon.cli import main
from tests.alerts.conftest import mowing_series, s1_row, s2_row


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def good(tmp_path: Path) -> dict[str, Path]:
    """A small mowing data set (two grassland parcels, S2 + S1) as interchange files."""
    obs = pd.concat([mowing_series("G1", cuts=(160.0,)), mowing_series("G2", cuts=(150.0, 220.0), seed=1)])
    obs = obs.drop(columns=["days"])
    obs["time"] = obs["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    paths = {"obs": tmp_path / "observations.csv", "parcels": tmp_path / "parcels.csv",
             "queries": tmp_path / "queries.csv"}
    obs.to_csv(paths["obs"], index=False)
    pd.DataFrame({"parcel_id": ["G1", "G2"], "land_use": ["grassland", "grassland"]}).to_csv(
        paths["parcels"], index=False)
    pd.DataFrame({"parcel_id": ["G1", "G2"], "time": ["2024-06-01T00:00:00Z"] * 2}).to_csv(
        paths["queries"], index=False)
    return paths


def corrupt(src: Path, dst: Path, edit) -> Path:
    """Copy of ``src`` with ``edit(df)`` applied to its cells (as text, like a user's editor)."""
    df = pd.read_csv(src, dtype=str)
    edit(df)
    df.to_csv(dst, index=False)
    return dst


def s2_lines(path: Path, n: int) -> list[int]:
    """File line numbers (header = line 1) of the first ``n`` S2 rows."""
    df = pd.read_csv(path, dtype=str)
    return [int(i) + 2 for i in np.flatnonzero(df["sensor"].to_numpy() == "S2")[:n]]


def set_s2(df: pd.DataFrame, col: str, values: list[str]) -> None:
    idx = np.flatnonzero(df["sensor"].to_numpy() == "S2")[: len(values)]
    df[col] = df[col].astype(object)
    for i, v in zip(idx, values, strict=True):
        df.iloc[i, df.columns.get_loc(col)] = v


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def refused_everywhere(bad: Path, good: dict[str, Path], tmp_path: Path, capsys, *expect: str) -> None:
    """``detect``, ``gapfill`` and ``import`` given ``bad``: the offline commands exit 1 with one line
    naming the file and every string of ``expect``; their earlier outputs are untouched."""
    out = tmp_path / "alerts.csv"
    out.write_text("earlier run\n")
    filled = tmp_path / "filled.csv"
    filled.write_text("earlier run\n")
    before = (sha(out), sha(filled), sha(bad))
    for args in (
        ["detect", "--observations", str(bad), "--parcels", str(good["parcels"]), "--out", str(out)],
        ["gapfill", "--observations", str(bad), "--parcels", str(good["parcels"]), "--at", str(good["queries"]),
         "--out", str(filled)],
    ):
        code, _, err = run_cli(args, capsys)
        assert code == 1, err
        line = err.strip()
        assert len(line.splitlines()) == 1 and str(bad) in line, line
        for text in expect:
            assert text in line, line
    assert (sha(out), sha(filled), sha(bad)) == before


def test_the_real_files_pass_the_rule_unchanged():
    from tests.alerts.conftest import REAL

    df = read_table(REAL / "observations.csv")
    checked = check_observations(df, "real")
    assert len(checked.frame) == len(df) and not checked.rejected and checked.duplicates == 0


def test_missing_band_column_refused_unless_told_the_sensors(good, tmp_path, capsys):
    bad = corrupt(good["obs"], tmp_path / "no_b04.csv", lambda d: d.drop(columns=["B04"], inplace=True))
    refused_everywhere(bad, good, tmp_path, capsys, "missing column B04", "--sensors S1")
    # told to use S1 only: the S1 rows are used, the S2 rows left out
    out = tmp_path / "s1.csv"
    code, _, err = run_cli(["detect", "--observations", str(bad), "--parcels", str(good["parcels"]),
                            "--out", str(out), "--sensors", "S1"], capsys)
    assert code == 0, err
    # import: refused whole without --sensors, the store untouched; with --sensors S1 only S1 rows
    series = tmp_path / "series"
    assert run_cli(["ingest", "import", str(good["obs"]), "--series", str(series), "--bus", "none"], capsys)[0] == 0
    n_before = read_series(series).num_rows
    code, _, err = run_cli(["ingest", "import", str(bad), "--series", str(series), "--bus", "none"], capsys)
    assert code == 1 and "missing column B04" in err and str(bad) in err
    assert read_series(series).num_rows == n_before
    code, out_json, err = run_cli(["ingest", "import", str(bad), "--series", str(tmp_path / "s1only"),
                                   "--sensors", "S1", "--bus", "none"], capsys)
    assert code == 0, err
    stored = read_series(tmp_path / "s1only").to_pandas()
    assert set(stored.sensor) == {"S1"} and len(stored) == json.loads(out_json)["rows"]


def test_text_in_a_band_is_rejected_with_its_line(good, tmp_path, capsys):
    bad = corrupt(good["obs"], tmp_path / "text.csv", lambda d: set_s2(d, "B08", ["0.4", "high", "0.3.1"]))
    lines = s2_lines(bad, 3)[1:]
    refused_everywhere(bad, good, tmp_path, capsys, "2 rows rejected",
                       f"line {lines[0]}: B08 is not a number: 'high'", f"line {lines[1]}: B08 is not a number")
    series = tmp_path / "series"
    code, out, err = run_cli(["ingest", "import", str(bad), "--series", str(series), "--bus", "none"], capsys)
    report = json.loads(out)
    assert code == 0 and [r[0] for r in report["rejected"]] == lines
    assert f"line {lines[0]} rejected: B08 is not a number: 'high'" in err
    assert read_series(series).num_rows == len(pd.read_csv(bad)) - 2


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["1e30"], "B04 = 1e+30 out of range: surface reflectance must be [-0.1, 3.0]"),
        (["-5"], "B04 = -5 out of range"),
        (["inf"], "B04 is not finite: inf"),
    ],
)
def test_impossible_reflectance_rows_rejected(good, tmp_path, capsys, values, message):
    bad = corrupt(good["obs"], tmp_path / "bad.csv", lambda d: set_s2(d, "B04", values))
    line = s2_lines(bad, 1)[0]
    refused_everywhere(bad, good, tmp_path, capsys, f"line {line}: {message}")
    series = tmp_path / "series"
    code, out, _ = run_cli(["ingest", "import", str(bad), "--series", str(series), "--bus", "none"], capsys)
    assert code == 0 and json.loads(out)["rejected"][0][0] == line
    stored = read_series(series).to_pandas()
    assert np.isfinite(stored.B04.dropna()).all() and stored.B04.max() <= 3.0


def test_backscatter_clear_and_orbit_ranges(tmp_path):
    rows = [s1_row("A", 1.0, -15.0), s1_row("A", 2.0, -15.0), s1_row("A", 3.0, -15.0), s2_row("A", 4.0, 0.5)]
    df = pd.DataFrame(rows)
    df.loc[0, "VV"] = -0.2
    df.loc[1, "orbit"] = 400
    df.loc[3, "clear"] = 3
    checked = check_observations(df, "t")
    assert [(r.line, r.reason.split(" out of range")[0]) for r in checked.rejected] == [
        (1, "VV = -0.2"), (2, "orbit = 400"), (4, "clear = 3")]
    assert len(checked.frame) == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.assign(**{b: pd.to_numeric(d[b]) * 10000 for b in ("B02", "B03", "B04", "B08")}),
         "B02 looks like digital numbers"),
        (lambda d: d.assign(VH=10 * np.log10(pd.to_numeric(d["VH"]))), "VH looks like decibels"),
    ],
)
def test_a_plainly_wrong_unit_refuses_the_whole_file(good, tmp_path, capsys, edit, message):
    df = pd.read_csv(good["obs"], dtype=str)
    bad = tmp_path / "unit.csv"
    edit(df).to_csv(bad, index=False)
    refused_everywhere(bad, good, tmp_path, capsys, message, "the file is refused")
    series = tmp_path / "series"
    code, _, err = run_cli(["ingest", "import", str(bad), "--series", str(series), "--bus", "none"], capsys)
    assert code == 1 and message in err and not series.exists()


def test_eval_applies_the_same_rule(good, tmp_path, capsys):
    data = tmp_path / "dataset"
    data.mkdir()
    corrupt(good["obs"], data / "observations.csv", lambda d: set_s2(d, "B04", ["1e30"]))
    (data / "parcels.csv").write_bytes(good["parcels"].read_bytes())
    pd.DataFrame({"parcel_id": ["G1"], "event": ["mowing"], "date": ["2024-06-09"], "end_date": [""]}).to_csv(
        data / "events.csv", index=False)
    code, _, err = run_cli(["eval", "mowing", "--data", str(data), "--quick"], capsys)
    assert code == 1 and "B04 = 1e+30 out of range" in err and "observations.csv" in err


def test_a_directory_given_as_input(good, tmp_path, capsys):
    folder = tmp_path / "adir"
    folder.mkdir()
    for args in (
        ["detect", "--observations", str(folder), "--parcels", str(good["parcels"]), "--out", str(tmp_path / "o.csv")],
        ["detect", "--observations", str(good["obs"]), "--parcels", str(folder), "--out", str(tmp_path / "o.csv")],
        ["gapfill", "--observations", str(good["obs"]), "--parcels", str(good["parcels"]), "--at", str(folder),
         "--out", str(tmp_path / "f.csv")],
        ["ingest", "import", str(folder), "--series", str(tmp_path / "s"), "--bus", "none"],
    ):
        code, _, err = run_cli(args, capsys)
        assert code == 1 and err.strip().endswith(f"{folder} is a directory, expected a file"), err
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "s").exists()


def test_a_huge_cell_is_never_echoed(good, tmp_path, capsys):
    """A 4 MB cell (the 300 MB line of the issue, scaled down) is quoted to 40 characters."""
    huge = "x" * 4_000_000
    bad = corrupt(good["obs"], tmp_path / "huge.csv", lambda d: set_s2(d, "B03", [huge]))
    series = tmp_path / "series"
    code, out, err = run_cli(["ingest", "import", str(bad), "--series", str(series), "--bus", "none"], capsys)
    assert code == 0 and "(4000000 characters)" in err
    assert len(out) + len(err) < 5000
    code, out, err = run_cli(["detect", "--observations", str(bad), "--parcels", str(good["parcels"]),
                              "--out", str(tmp_path / "o.csv")], capsys)
    assert code == 1 and len(out) + len(err) < 2000 and "B03 is not a number" in err


def test_one_duplicate_policy_in_import_detect_and_gapfill(tmp_path):
    """The last of rows sharing (parcel_id, time, sensor) wins, in every entry point."""
    from alerts.series import normalise_observations
    from ingest.importer import import_series

    first, last = s2_row("A", 1.0, 0.2), s2_row("A", 1.0, 0.8)
    rows = [first, s2_row("A", 2.0, 0.5), last]
    df = pd.DataFrame(rows)
    kept, dropped = drop_duplicates(df)
    assert list(dropped) == [True, False, False] and len(kept) == 2
    offline = normalise_observations(df)  # what detect, gapfill and eval read
    path = tmp_path / "dups.csv"
    df.to_csv(path, index=False)
    report = import_series(path, tmp_path / "s")
    stored = read_series(tmp_path / "s").to_pandas()
    assert report.duplicates == 1 and len(stored) == len(offline) == 2
    assert stored.B08.iloc[0] == pytest.approx(offline.B08.iloc[0]) == pytest.approx(last["B08"])


def test_a_streaming_consumer_can_leave_rejected_rows_out(caplog):
    from alerts.errors import SeriesError
    from alerts.series import normalise_observations

    df = pd.DataFrame([s2_row("A", 1.0, 0.5), s2_row("A", 2.0, 0.5), s1_row("A", 3.0, -15.0)])
    df.loc[1, "B04"] = 1e30
    with pytest.raises(SeriesError, match="row 2: B04 = 1e"):
        normalise_observations(df, source="slot S2/20240102")
    kept = normalise_observations(df, source="slot S2/20240102", strict=False)
    assert len(kept) == 2 and "slot S2/20240102: 1 row rejected: row 2" in caplog.text
