"""Experiment and campaign readouts from the event archive.

**Experiments** (``shopwise report experiment NAME``). The serve API writes every answer as an ``impression`` event
with its experiment, variant and recommendation_id (``shopwise.serving.recommend.impression_line``); the storefront
sends ``click`` events with the recommendation_id of the list clicked, and purchases. Per variant (the holdout is
an arm like the others):

- shoppers exposed (the unit of randomisation: assignment hashes the profile), impressions, attributed clicks;
- CTR = attributed clicks / impressions;
- sessions of exposed shoppers from their first exposure on (the event's session_id, else a 30-minute gap), the
  conversion rate (sessions with a purchase / sessions) and revenue per session;
- attributed purchases: a purchased line whose item the same shopper clicked from the experiment's lists within
  ``attribution_hours`` before, and their revenue.

Every ratio is a ratio of sums over shoppers, so its standard error comes from the delta method over shoppers (the
clusters), not from counting impressions or sessions as independent. Each variant is compared with the first
(control): the difference, its 95% interval and the relative lift. The sample-ratio-mismatch check compares the
exposed shoppers per arm with the configured split (chi-square, p < 0.001 flags it: the arms are not comparable
until the cause is found).

**Campaigns** (``shopwise report campaign NAME``): a run's recipients against its holdout (``holdout.jsonl``): the
share of each group who bought within ``days`` of the run, revenue per member, the difference with its interval.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from shopwise.events import Click, Event, Impression, Purchase

Z95 = 1.959963984540054
SRM_P = 0.001
SESSION_GAP_S = 30 * 60
STOREFRONT = ("product_view", "add_to_cart", "remove_from_cart", "purchase", "search", "click")


@dataclass(frozen=True)
class Ratio:
    """A ratio of sums over shoppers, with its delta-method standard error."""

    value: float
    se: float
    numerator: float
    denominator: float

    @property
    def interval(self) -> tuple[float, float]:
        return self.value - Z95 * self.se, self.value + Z95 * self.se

    @classmethod
    def of(cls, numerators: np.ndarray, denominators: np.ndarray) -> Ratio:
        """sum(y) / sum(x) over n clusters: Var ≈ (var(y) - 2 r cov(x, y) + r² var(x)) / (n mean(x)²)."""
        y, x = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
        n, total = len(x), float(x.sum())
        if n == 0 or total == 0:
            return cls(math.nan, math.nan, float(y.sum()), total)
        r = float(y.sum()) / total
        if n < 2:
            return cls(r, math.nan, float(y.sum()), total)
        cov = np.cov(np.vstack([y, x]), ddof=1)
        variance = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (n * float(x.mean()) ** 2)
        return cls(r, math.sqrt(max(variance, 0.0)), float(y.sum()), total)


@dataclass(frozen=True)
class Comparison:
    """A variant against the control: difference, its 95% interval, relative lift."""

    difference: float
    low: float
    high: float
    lift: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    @classmethod
    def of(cls, variant: Ratio, control: Ratio) -> Comparison:
        diff = variant.value - control.value
        se = math.sqrt(variant.se**2 + control.se**2)
        lift = diff / control.value if control.value else math.nan
        return cls(diff, diff - Z95 * se, diff + Z95 * se, lift)


@dataclass
class Arm:
    name: str
    shoppers: int = 0
    expected_share: float = math.nan
    metrics: dict[str, Ratio] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    versus_control: dict[str, Comparison] = field(default_factory=dict)


@dataclass
class Readout:
    subject: str
    arms: list[Arm]
    srm_p: float = math.nan
    notes: list[str] = field(default_factory=list)

    @property
    def sample_ratio_mismatch(self) -> bool:
        return self.srm_p < SRM_P

    def to_json(self) -> dict[str, Any]:
        def clean(value: Any) -> Any:
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        arms = []
        for arm in self.arms:
            doc = asdict(arm)
            for name, ratio in arm.metrics.items():
                doc["metrics"][name]["interval"] = list(ratio.interval)
            arms.append(doc)
        return clean(
            {
                "subject": self.subject,
                "sample_ratio_mismatch": self.sample_ratio_mismatch,
                "srm_p": self.srm_p,
                "arms": arms,
                "notes": self.notes,
            }
        )


def srm_p_value(observed: list[int], expected_shares: list[float]) -> float:
    """Chi-square goodness of fit of the shoppers per arm against the configured split."""
    total = sum(observed)
    shares = np.asarray(expected_shares, dtype=float)
    if total == 0 or len(observed) < 2 or not np.all(np.isfinite(shares)) or shares.sum() <= 0:
        return math.nan
    expected = shares / shares.sum() * total
    return float(stats.chisquare(observed, expected).pvalue)


def _revenue(event: Purchase) -> float:
    return float(event.revenue) if event.revenue is not None else sum(li.unit_price * li.quantity for li in event.items)


def experiment_readout(
    events: Iterable[Event],
    name: str,
    shares: dict[str, float] | None = None,
    attribution_hours: float = 24.0,
) -> Readout:
    """The readout of experiment ``name`` over ``events`` (any order). ``shares``: the configured share of
    shoppers per arm (holdout included), for the sample-ratio check; arms are listed control first."""
    exposed: dict[str, tuple[float, str]] = {}  # profile -> (first exposure, arm)
    impressions: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # arm -> profile -> count
    listed: dict[str, tuple[str, str]] = {}  # recommendation_id -> (arm, profile)
    later: list[Event] = []
    arm_order: list[str] = list(shares or {})
    for event in events:
        if isinstance(event, Impression) and event.experiment == name and event.variant:
            at, who, arm = event.occurred_at.timestamp(), event.profile_id, event.variant
            if who in exposed and exposed[who][1] != arm:
                continue  # a shopper's arm is stable; a second arm means a re-keyed experiment: first one wins
            exposed[who] = (min(at, exposed.get(who, (at, arm))[0]), arm)
            impressions[arm][who] += 1
            listed[event.recommendation_id] = (arm, who)
            if arm not in arm_order:
                arm_order.append(arm)
        elif event.event_type in STOREFRONT:
            later.append(event)

    clicks: dict[str, int] = defaultdict(int)
    clicked_at: dict[tuple[str, str], float] = {}  # (profile, item) -> newest attributed click
    sessions: dict[str, dict[str, list[float]]] = defaultdict(dict)  # profile -> session -> [purchases, revenue]
    attributed: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # profile -> [lines, revenue]
    last_seen: dict[str, tuple[float, str]] = {}
    for event in sorted(later, key=lambda e: e.occurred_at):
        who, at = event.profile_id, event.occurred_at.timestamp()
        if who not in exposed or at < exposed[who][0]:
            continue
        # a click counts only on a list served to the same shopper (a click is the browser's word)
        if isinstance(event, Click) and event.recommendation_id in listed and listed[event.recommendation_id][1] == who:
            clicks[who] += 1
            clicked_at[(who, event.item_id)] = at
        session = event.session_id
        if not session:
            previous = last_seen.get(who)
            session = previous[1] if previous and at - previous[0] <= SESSION_GAP_S else f"gap-{at}"
        last_seen[who] = (at, session)
        tally = sessions[who].setdefault(session, [0.0, 0.0])
        if isinstance(event, Purchase):
            tally[0] += 1
            tally[1] += _revenue(event)
            for line in event.items:
                click = clicked_at.get((who, line.item_id))
                if click is not None and at - click <= attribution_hours * 3600:
                    attributed[who][0] += 1
                    attributed[who][1] += line.unit_price * line.quantity

    arms: list[Arm] = []
    for arm_name in arm_order:
        members = sorted(who for who, (_at, arm) in exposed.items() if arm == arm_name)
        imps = np.array([impressions[arm_name][w] for w in members], dtype=float)
        clk = np.array([clicks[w] for w in members], dtype=float)
        n_sessions = np.array([max(len(sessions[w]), 1) for w in members], dtype=float)
        converted = np.array([sum(1 for s in sessions[w].values() if s[0] > 0) for w in members], dtype=float)
        revenue = np.array([sum(s[1] for s in sessions[w].values()) for w in members], dtype=float)
        attributed_revenue = np.array([attributed[w][1] for w in members], dtype=float)
        ones = np.ones(len(members))
        arms.append(
            Arm(
                arm_name,
                shoppers=len(members),
                expected_share=(shares or {}).get(arm_name, math.nan),
                metrics={
                    "ctr": Ratio.of(clk, imps),
                    "conversion_rate": Ratio.of(converted, n_sessions),
                    "revenue_per_session": Ratio.of(revenue, n_sessions),
                    "attributed_revenue_per_shopper": Ratio.of(attributed_revenue, ones),
                },
                counts={
                    "impressions": float(imps.sum()),
                    "clicks": float(clk.sum()),
                    "sessions": float(n_sessions.sum()),
                    "attributed_purchases": float(sum(attributed[w][0] for w in members)),
                },
            )
        )
    _compare(arms)
    readout = Readout(f"experiment {name}", arms)
    if shares:
        readout.srm_p = srm_p_value([a.shoppers for a in arms], [a.expected_share for a in arms])
    if not arms:
        readout.notes.append(f"no impressions of experiment {name!r} in the events read")
    return readout


def campaign_readout(
    events: Iterable[Event], sent: list[dict[str, Any]], held: list[dict[str, Any]], since: float, days: float = 7.0
) -> Readout:
    """A campaign run's recipients against its holdout: who bought within ``days`` of ``since``, and revenue."""
    members = {"sent": [r["profile_id"] for r in sent], "holdout": [r["profile_id"] for r in held]}
    bought: dict[str, float] = defaultdict(float)
    buyers: set[str] = set()
    until = since + days * 86400
    everyone = set(members["sent"]) | set(members["holdout"])
    for event in events:
        if isinstance(event, Purchase) and event.profile_id in everyone:
            at = event.occurred_at.timestamp()
            if since <= at <= until:
                buyers.add(event.profile_id)
                bought[event.profile_id] += _revenue(event)
    arms = []
    for arm_name in ("holdout", "sent"):  # the holdout is the control
        who = members[arm_name]
        ones = np.ones(len(who))
        arms.append(
            Arm(
                arm_name,
                shoppers=len(who),
                metrics={
                    "purchase_rate": Ratio.of(np.array([w in buyers for w in who], dtype=float), ones),
                    "revenue_per_member": Ratio.of(np.array([bought[w] for w in who], dtype=float), ones),
                },
            )
        )
    _compare(arms)
    readout = Readout("campaign", arms)
    if not members["holdout"]:
        readout.notes.append("the run held nobody out: no lift can be measured")
    return readout


def _compare(arms: list[Arm]) -> None:
    if not arms:
        return
    control = arms[0]
    for arm in arms[1:]:
        arm.versus_control = {
            name: Comparison.of(ratio, control.metrics[name])
            for name, ratio in arm.metrics.items()
            if math.isfinite(ratio.value) and math.isfinite(control.metrics[name].value)
        }


def format_readout(readout: Readout) -> str:
    lines = [readout.subject]
    if not readout.arms:
        return "\n".join([*lines, *readout.notes])
    names = list(readout.arms[0].metrics)
    lines.append(f"{'arm':<16} {'shoppers':>9}  " + "  ".join(f"{n:>34}" for n in names))
    for arm in readout.arms:
        cells = []
        for n in names:
            r = arm.metrics[n]
            low, high = r.interval
            cells.append(f"{r.value:>10.4f} [{low:>9.4f}, {high:>9.4f}]")
        lines.append(f"{arm.name:<16} {arm.shoppers:>9}  " + "  ".join(f"{c:>34}" for c in cells))
        for n, c in arm.versus_control.items():
            mark = "  *" if c.significant else ""
            lines.append(
                f"    {n} vs {readout.arms[0].name}: {c.difference:+.4f} [{c.low:+.4f}, {c.high:+.4f}]"
                f" ({c.lift:+.1%}){mark}"
            )
    if math.isfinite(readout.srm_p):
        verdict = "SAMPLE RATIO MISMATCH: do not trust the comparison" if readout.sample_ratio_mismatch else "ok"
        shares = ", ".join(f"{a.name} {a.shoppers} (expected {a.expected_share:.1%})" for a in readout.arms)
        lines.append(f"sample ratio: {shares}; chi-square p = {readout.srm_p:.4g}: {verdict}")
    lines += readout.notes
    lines.append("intervals: 95%, delta method over shoppers; * = the interval of the difference excludes 0")
    return "\n".join(lines)


def plot_readout(readout: Readout, path: Path) -> Path:
    """One panel per metric: each arm's value with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(readout.arms[0].metrics) if readout.arms else []
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4 * max(len(names), 1), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=False):
        values = [a.metrics[name].value for a in readout.arms]
        errors = [Z95 * a.metrics[name].se if math.isfinite(a.metrics[name].se) else 0.0 for a in readout.arms]
        ax.errorbar(range(len(values)), values, yerr=errors, fmt="o", capsize=6)
        ax.set_xticks(range(len(values)), [f"{a.name}\nn={a.shoppers}" for a in readout.arms])
        ax.set_title(name.replace("_", " "))
        ax.grid(axis="y", alpha=0.3)
    title = readout.subject + ("  — SAMPLE RATIO MISMATCH" if readout.sample_ratio_mismatch else "")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
