"""MovieLens latest-small as a store: movies become items (genres -> category path), ratings become events.

Mapping (also in the README): a rating >= 4 is a purchase, anything lower a product_view. Timestamps are shifted
so the newest rating happened an hour ago, which keeps recency features and the live API's clock rule meaningful.
MovieLens has no consent records: the replay grants personalisation before each user's first replayed rating (what
a consent banner would send), so the personal models learn from the replay window's ratings and the bestsellers from
all of them (training's consent rule); ``convert(..., consent=True)`` puts a grant before each user's first rating in
the history instead.
"""

from __future__ import annotations

import csv
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

PURCHASE_RATING = 4.0
YEAR = re.compile(r"\((\d{4})\)\s*$")


@dataclass(frozen=True)
class ConvertedDataset:
    items: Path
    history: Path  # everything older than the replay window: bulk import
    replay: Path  # the most recent slice: replayed through POST /v1/events
    items_count: int
    history_count: int
    replay_count: int


def convert(
    source: Path, target: Path, replay_days: float = 60.0, replay_max: int = 5000, consent: bool = False
) -> ConvertedDataset:
    movies, ratings = source / "movies.csv", source / "ratings.csv"
    for path in (movies, ratings):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: expected the MovieLens latest-small folder")
    target.mkdir(parents=True, exist_ok=True)
    items_path = target / "items.jsonl"
    items_count = 0
    with movies.open(newline="", encoding="utf-8") as src, items_path.open("w") as out:
        for row in csv.DictReader(src):
            genres = [g for g in row["genres"].split("|") if g and g != "(no genres listed)"]
            year = YEAR.search(row["title"])
            item = {
                "item_id": row["movieId"],
                "title": row["title"],
                "category": "Movies>" + (genres[0] if genres else "Other"),
                "brand": "MovieLens",
                "attributes": {"genres": genres, **({"year": int(year.group(1))} if year else {})},
            }
            out.write(json.dumps(item) + "\n")
            items_count += 1

    with ratings.open(newline="", encoding="utf-8") as src:
        rows = list(csv.DictReader(src))
    newest = max(int(r["timestamp"]) for r in rows)
    shift = int(time.time()) - 3600 - newest
    rows.sort(key=lambda r: (int(r["timestamp"]), r["userId"], r["movieId"]))
    window_start = newest - replay_days * 86400
    replay_rows = [r for r in rows if int(r["timestamp"]) >= window_start][-replay_max:]
    replay_first = len(rows) - len(replay_rows)

    def write(path: Path, selected: list[dict[str, str]], offset: int, consent: bool) -> int:
        seen: set[str] = set()
        written = 0
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["event_id", "user_id", "item_id", "timestamp", "event_type", "granted"])
            for n, r in enumerate(selected):
                kind = "purchase" if float(r["rating"]) >= PURCHASE_RATING else "product_view"
                ts = int(r["timestamp"]) + shift
                if consent and r["userId"] not in seen:
                    seen.add(r["userId"])
                    writer.writerow(
                        [f"ml-consent-{r['userId']}", r["userId"], "", ts - 1, "consent", "personalisation"]
                    )
                    written += 1
                writer.writerow([f"ml-{offset + n}", r["userId"], r["movieId"], ts, kind, ""])
                written += 1
        return written

    history_path, replay_path = target / "history.csv", target / "replay.csv"
    history_count = write(history_path, rows[:replay_first], 0, consent=consent)
    write(replay_path, replay_rows, replay_first, consent=False)
    return ConvertedDataset(
        items=items_path,
        history=history_path,
        replay=replay_path,
        items_count=items_count,
        history_count=history_count,
        replay_count=len(replay_rows),
    )
