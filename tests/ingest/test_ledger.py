"""One contract suite for both ledgers: SQLite (embedded) and PostgreSQL (real server)."""

from __future__ import annotations

import json

import pytest

from ingest.errors import LedgerError
from ingest.items import parse_item
from ingest.ledger import PostgresLedger, SqliteLedger, open_ledger
from ingest.types import ItemStatus
from tests.ingest.helpers import MiniArchive, add_s1, add_s2, grid


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    from datetime import UTC, datetime

    a = MiniArchive(tmp_path_factory.mktemp("ledger_items"), grid(16))
    add_s2(a, datetime(2024, 5, 3, 10, tzinfo=UTC), seed=1)
    add_s2(a, datetime(2024, 5, 3, 10, tzinfo=UTC), seed=2, baseline="05.11", item_id="S2A_33UXP_20240503_1_L2A")
    add_s1(a, datetime(2024, 5, 4, 5, tzinfo=UTC), seed=3)
    return a.items


class LedgerContract:
    @pytest.fixture
    def ledger(self):
        raise NotImplementedError

    def test_record_get_update(self, ledger, items):
        info = parse_item(items[0])
        assert ledger.get(info.collection, info.item_id) is None
        ledger.record("src", info, items[0], ItemStatus.PENDING)
        e = ledger.get(info.collection, info.item_id)
        assert e.status is ItemStatus.PENDING and e.tile_id == "33UXP" and e.slot_key == "20240503"
        assert e.item == items[0] and e.acq_time == info.datetime_s and e.baseline == "05.10"
        ledger.record("src", info, items[0], ItemStatus.INGESTED)
        assert ledger.get(info.collection, info.item_id).status is ItemStatus.INGESTED
        assert len(ledger.entries()) == 1  # upsert, not a second row

    def test_entries_filters_and_statuses(self, ledger, items):
        for item, status in zip(items, (ItemStatus.SUPERSEDED, ItemStatus.INGESTED, ItemStatus.PENDING), strict=True):
            ledger.record("src", parse_item(item), item, status, "why" if status is ItemStatus.SUPERSEDED else "")
        assert {e.item_id for e in ledger.entries(slot_key="20240503", sensor="S2", tile_id="33UXP")} == {
            items[0]["id"], items[1]["id"]}
        pend = ledger.entries(status=ItemStatus.PENDING)
        assert [e.item_id for e in pend] == [items[2]["id"]]
        ledger.set_status("sentinel-1-grd", [items[2]["id"]], ItemStatus.QUARANTINED, "bad asset")
        q = ledger.get("sentinel-1-grd", items[2]["id"])
        assert q.status is ItemStatus.QUARANTINED and q.reason == "bad asset"
        assert ledger.counts() == {"superseded": 1, "ingested": 1, "quarantined": 1}

    def test_quarantine_raw_keeps_the_json(self, ledger):
        raw = {"id": "broken", "properties": "nope", "grid:code": 1}
        ledger.quarantine_raw("src", "sentinel-2-l2a", "broken", raw, "item broken: no properties object")
        e = ledger.get("sentinel-2-l2a", "broken")
        assert e.status is ItemStatus.QUARANTINED and "no properties" in e.reason
        assert json.loads(e.item_json) == raw

    def test_watermark_only_moves_forward(self, ledger):
        assert ledger.watermark("s", "c", "33UXP") is None
        ledger.advance_watermark("s", "c", "33UXP", 100)
        ledger.advance_watermark("s", "c", "33UXP", 50)
        assert ledger.watermark("s", "c", "33UXP") == 100
        ledger.advance_watermark("s", "c", "33UXP", 200)
        assert ledger.watermark("s", "c", "33UXP") == 200
        assert ledger.watermark("s", "c", "other") is None
        assert ledger.watermarks() == [("s", "c", "33UXP", 200)]


class TestSqliteLedger(LedgerContract):
    @pytest.fixture
    def ledger(self, tmp_path):
        led = open_ledger(tmp_path / "ledger.sqlite")
        assert isinstance(led, SqliteLedger)
        yield led
        led.close()

    def test_survives_reopen(self, tmp_path, items):
        led = open_ledger(f"sqlite:///{tmp_path}/l.sqlite")
        led.record("src", parse_item(items[0]), items[0], ItemStatus.INGESTED)
        led.close()
        again = open_ledger(tmp_path / "l.sqlite")
        assert again.get("sentinel-2-l2a", items[0]["id"]).status is ItemStatus.INGESTED
        again.close()

    def test_unwritable_location(self, tmp_path):
        (tmp_path / "file").write_text("x")
        with pytest.raises(LedgerError, match="cannot open ledger"):
            open_ledger(tmp_path / "file" / "ledger.sqlite")


@pytest.mark.integration
class TestPostgresLedger(LedgerContract):
    @pytest.fixture
    def ledger(self, postgres_dsn):
        led = open_ledger(postgres_dsn)
        assert isinstance(led, PostgresLedger)
        led._execute("DELETE FROM ingest_items")
        led._execute("DELETE FROM ingest_watermarks")
        yield led
        led.close()

    def test_unreachable_server(self):
        with pytest.raises(LedgerError, match="cannot connect"):
            open_ledger("postgresql://nobody@127.0.0.1:1/none")
