"""The indicators, as pure functions of facts already read (no I/O, no clock).

Definitions (README "Indicators" repeats them):
- a call counts in the period, day and local hour of its ``offered`` instant;
- answer rate = answered / offered; abandon rate = abandoned / offered (a call
  still ringing is offered, neither answered nor abandoned);
- time to answer: offered -> answered, over answered calls; mean and p90;
- time to abandon: offered -> hang-up, over abandoned calls; mean;
- duration: answered -> ended (else -> transferred), over answered calls that
  have one; mean;
- qualification rate = answered calls named (``call_id``) by at least one accepted
  message (not one a drop rule discarded) or booked appointment / answered calls;
- percentiles are nearest-rank: the ceil(p x n)-th smallest value;
- delivery latency: the delivery's creation (the accept) -> delivered, per
  destination (connection), over deliveries delivered in the period;
- time to acknowledgement: escalation opened -> acknowledged, over escalations
  opened in the period and acknowledged.
A rate or a statistic over nothing is ``None`` (never a made-up 0).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True)
class CallFacts:
    offered_local: datetime  # the offered instant in the tenant's zone
    outcome: str  # answered | abandoned | ringing
    wait_seconds: float | None
    talk_seconds: float | None
    qualified: bool = False


@dataclass(frozen=True)
class MessageFacts:
    call_type: str
    count: int = 1  # messages of this call type (the store counts them in SQL)


@dataclass(frozen=True)
class AppointmentCounts:
    booked: int = 0
    moved: int = 0
    cancelled: int = 0


@dataclass(frozen=True)
class DeliveryFacts:
    destination: str
    status: str  # delivered | dead
    latency_seconds: float | None  # delivered ones


@dataclass(frozen=True)
class EscalationFacts:
    outcome: str  # running | acknowledged | dead_end | abandoned
    ack_seconds: float | None


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in (0, 1]) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered))) - 1]


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class CallGroup:
    """The calls of one local day and hour with one outcome: counts and sums."""

    day: date
    hour: int
    outcome: str
    count: int = 0
    wait_sum: float = 0.0
    wait_n: int = 0
    talk_sum: float = 0.0
    talk_n: int = 0
    qualified: int = 0


def group_calls(calls: Iterable[CallFacts]) -> tuple[list[CallGroup], list[float]]:
    """``calls`` as groups, and the answered calls' times to answer (for the p90)."""
    groups: dict[tuple[date, int, str], CallGroup] = {}
    waits: list[float] = []
    for call in calls:
        local = call.offered_local
        key = (local.date(), local.hour, call.outcome)
        group = groups.get(key)
        if group is None:
            group = groups[key] = CallGroup(*key)
        group.count += 1
        if call.wait_seconds is not None:
            group.wait_sum += call.wait_seconds
            group.wait_n += 1
            if call.outcome == "answered":
                waits.append(call.wait_seconds)
        if call.talk_seconds is not None:
            group.talk_sum += call.talk_seconds
            group.talk_n += 1
        group.qualified += call.qualified
    return list(groups.values()), waits


def _mean(total: float, n: int) -> float | None:
    """Means are rounded to the millisecond: sums taken in another order (SQL) agree."""
    return round(total / n, 3) if n else None


def combine_calls(groups: Iterable[CallGroup], answered_waits: Sequence[float]
                  ) -> dict[str, Any]:
    """The call indicators from groups (SQL or :func:`group_calls`) and the waits."""
    offered = answered = abandoned = qualified = 0
    sums = {"wait": [0.0, 0], "abandon": [0.0, 0], "talk": [0.0, 0]}
    by_hour = [0] * 24
    abandoned_by_hour = [0] * 24
    days: dict[date, list[Any]] = {}
    for g in groups:
        offered += g.count
        by_hour[g.hour] += g.count
        day = days.setdefault(g.day, [0, 0, 0, 0.0, 0])
        day[0] += g.count
        if g.outcome == "answered":
            answered += g.count
            day[1] += g.count
            day[3] += g.wait_sum
            day[4] += g.wait_n
            sums["wait"][0] += g.wait_sum
            sums["wait"][1] += g.wait_n
            sums["talk"][0] += g.talk_sum
            sums["talk"][1] += g.talk_n
            qualified += g.qualified
        elif g.outcome == "abandoned":
            abandoned += g.count
            day[2] += g.count
            abandoned_by_hour[g.hour] += g.count
            sums["abandon"][0] += g.wait_sum
            sums["abandon"][1] += g.wait_n
    return {
        "offered": offered,
        "answered": answered,
        "abandoned": abandoned,
        "ringing": offered - answered - abandoned,
        "answer_rate": rate(answered, offered),
        "abandon_rate": rate(abandoned, offered),
        "time_to_answer_seconds": {"mean": _mean(*sums["wait"]),
                                   "p90": percentile(answered_waits, 0.9)},
        "time_to_abandon_seconds": {"mean": _mean(*sums["abandon"])},
        "duration_seconds": {"mean": _mean(*sums["talk"])},
        "qualified": qualified,
        "qualification_rate": rate(qualified, answered),
        "by_hour": by_hour,
        "abandoned_by_hour": abandoned_by_hour,
        "by_day": [
            {"day": d.isoformat(), "offered": v[0], "answered": v[1], "abandoned": v[2],
             "answer_rate": rate(v[1], v[0]), "mean_time_to_answer_seconds": _mean(v[3], v[4])}
            for d, v in sorted(days.items())
        ],
    }


def call_indicators(calls: Iterable[CallFacts]) -> dict[str, Any]:
    return combine_calls(*group_calls(calls))


def message_indicators(messages: Iterable[MessageFacts]) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    for m in messages:
        counts[m.call_type] += m.count
    return {"total": sum(counts.values()), "by_call_type": dict(sorted(counts.items()))}


def delivery_indicators(deliveries: Iterable[DeliveryFacts]) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {}
    dead: Counter[str] = Counter()
    for d in deliveries:
        if d.status == "dead":
            dead[d.destination] += 1
        elif d.latency_seconds is not None:
            latencies.setdefault(d.destination, []).append(d.latency_seconds)
    names = sorted(set(latencies) | set(dead))
    return {
        "dead": sum(dead.values()),
        "by_destination": {
            name: {
                "delivered": len(latencies.get(name, [])),
                "dead": dead[name],
                "latency_seconds": {"p50": percentile(latencies.get(name, []), 0.5),
                                    "p95": percentile(latencies.get(name, []), 0.95)},
            }
            for name in names
        },
    }


def escalation_indicators(escalations: Iterable[EscalationFacts]) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    acks: list[float] = []
    for e in escalations:
        outcomes[e.outcome] += 1
        if e.outcome == "acknowledged" and e.ack_seconds is not None:
            acks.append(e.ack_seconds)
    return {
        "opened": sum(outcomes.values()),
        "acknowledged": outcomes["acknowledged"],
        "dead_end": outcomes["dead_end"],
        "open": outcomes["running"],
        "time_to_ack_seconds": {"mean": mean(acks), "p50": percentile(acks, 0.5)},
    }


def report(calls: Iterable[CallFacts] | dict[str, Any], messages: Iterable[MessageFacts],
           appointments: AppointmentCounts, deliveries: Iterable[DeliveryFacts],
           escalations: Iterable[EscalationFacts]) -> dict[str, Any]:
    """Every indicator of one period (the caller names the tenant and period);
    ``calls`` are facts, or their indicators already combined (:func:`combine_calls`)."""
    return {
        "calls": calls if isinstance(calls, dict) else call_indicators(calls),
        "messages": message_indicators(messages),
        "appointments": {"booked": appointments.booked, "moved": appointments.moved,
                         "cancelled": appointments.cancelled},
        "deliveries": delivery_indicators(deliveries),
        "escalations": escalation_indicators(escalations),
    }
