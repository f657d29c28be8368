import json
from pathlib import Path

from shopwise.catalog.items import CatalogItem
from shopwise.events import Purchase
from shopwise.ingestion.imports import BadRow, read_events, read_items


def test_event_rows_from_csv_with_bad_rows_reported_by_line(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,timestamp,event_type,price,quantity\n"
        "u1,i1,1700000000,purchase,9.5,2\n"
        "u1,i2,not-a-time,product_view,,\n"
        "u2,i3,2026-11-01T10:00:00Z,teleport,,\n"
        "u2,,2026-11-01T10:00:00Z,product_view,,\n"
        "u3,i4,1700000000000,product_view,,\n"
    )
    rows = list(read_events(path))
    good = [row for _, row in rows if not isinstance(row, BadRow)]
    bad = {row.line: row.reason for _, row in rows if isinstance(row, BadRow)}

    assert len(good) == 2
    purchase = good[0]
    assert isinstance(purchase, Purchase)
    assert purchase.revenue == 19.0
    assert good[1].occurred_at.year == 2023  # milliseconds understood
    assert set(bad) == {3, 4, 5}
    assert bad[3].startswith("timestamp")
    assert bad[4].startswith("event_type")
    assert bad[5].startswith("item_id")


def test_reimport_gives_the_same_event_ids(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("user_id,item_id,timestamp,event_type\nu,i,1700000000,product_view\n")
    first = [r.event_id for _, r in read_events(path) if not isinstance(r, BadRow)]
    second = [r.event_id for _, r in read_events(path) if not isinstance(r, BadRow)]
    assert first == second


def test_item_rows_from_json_lines_keep_free_attributes(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(
        json.dumps({"item_id": 7, "title": "Boots", "category": "Shoes>Boots", "colour": "red"})
        + "\n{broken\n"
        + json.dumps({"item_id": "8", "price": -1})
        + "\n"
    )
    rows = list(read_items(path))
    item = rows[0][1]
    assert isinstance(item, CatalogItem)
    assert item.item_id == "7"
    assert item.category_path == ["Shoes", "Boots"]
    assert item.attributes == {"colour": "red"}
    assert isinstance(rows[1][1], BadRow) and rows[1][0] == 2
    assert isinstance(rows[2][1], BadRow) and "price" in rows[2][1].reason
