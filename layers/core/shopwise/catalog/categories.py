"""Category paths, most general first ("Shoes>Running>Trail"): the one definition of how they are split, joined and
compared, for the catalog, serving's filters and diversity rule, and the training job's per-category lists."""

from __future__ import annotations

SEPARATOR = ">"


def parts(path: str) -> list[str]:
    """The path's levels, stripped, empty levels left out."""
    return [p.strip() for p in str(path).split(SEPARATOR) if p.strip()]


def join(levels: list[str]) -> str:
    return SEPARATOR.join(levels)


def prefixes(path: str) -> list[str]:
    """Every level of the path as a path of its own: "A>B>C" -> ["A", "A>B", "A>B>C"]."""
    levels = parts(path)
    return [join(levels[: depth + 1]) for depth in range(len(levels))]


def leaf(path: str) -> str:
    levels = parts(path)
    return levels[-1] if levels else path


def top_level(path: str) -> str:
    return path.split(SEPARATOR, 1)[0].strip()


def contains(path: str, wanted: str) -> bool:
    """Whether an item's category path lies in ``wanted`` (a path prefix at a separator, case-insensitive)."""
    have = [p.strip().lower() for p in path.split(SEPARATOR)]
    want = [p.strip().lower() for p in wanted.split(SEPARATOR)]
    return have[: len(want)] == want
