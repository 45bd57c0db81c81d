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


def call_indicators(calls: Iterable[CallFacts]) -> dict[str, Any]:
    offered = answered = abandoned = qualified = 0
    waits: list[float] = []
    abandon_waits: list[float] = []
    talks: list[float] = []
    by_hour = [0] * 24
    abandoned_by_hour = [0] * 24
    days: dict[date, list[int]] = {}
    day_waits: dict[date, list[float]] = {}
    for call in calls:
        offered += 1
        hour = call.offered_local.hour
        by_hour[hour] += 1
        day = days.setdefault(call.offered_local.date(), [0, 0, 0])
        day[0] += 1
        if call.outcome == "answered":
            answered += 1
            day[1] += 1
            if call.wait_seconds is not None:
                waits.append(call.wait_seconds)
                day_waits.setdefault(call.offered_local.date(), []).append(call.wait_seconds)
            if call.talk_seconds is not None:
                talks.append(call.talk_seconds)
            qualified += call.qualified
        elif call.outcome == "abandoned":
            abandoned += 1
            day[2] += 1
            abandoned_by_hour[hour] += 1
            if call.wait_seconds is not None:
                abandon_waits.append(call.wait_seconds)
    return {
        "offered": offered,
        "answered": answered,
        "abandoned": abandoned,
        "ringing": offered - answered - abandoned,
        "answer_rate": rate(answered, offered),
        "abandon_rate": rate(abandoned, offered),
        "time_to_answer_seconds": {"mean": mean(waits), "p90": percentile(waits, 0.9)},
        "time_to_abandon_seconds": {"mean": mean(abandon_waits)},
        "duration_seconds": {"mean": mean(talks)},
        "qualified": qualified,
        "qualification_rate": rate(qualified, answered),
        "by_hour": by_hour,
        "abandoned_by_hour": abandoned_by_hour,
        "by_day": [
            {"day": d.isoformat(), "offered": v[0], "answered": v[1], "abandoned": v[2],
             "answer_rate": rate(v[1], v[0]),
             "mean_time_to_answer_seconds": mean(day_waits.get(d, []))}
            for d, v in sorted(days.items())
        ],
    }


def message_indicators(messages: Iterable[MessageFacts]) -> dict[str, Any]:
    counts = Counter(m.call_type for m in messages)
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


def report(calls: Iterable[CallFacts], messages: Iterable[MessageFacts],
           appointments: AppointmentCounts, deliveries: Iterable[DeliveryFacts],
           escalations: Iterable[EscalationFacts]) -> dict[str, Any]:
    """Every indicator of one period (the caller names the tenant and period)."""
    return {
        "calls": call_indicators(calls),
        "messages": message_indicators(messages),
        "appointments": {"booked": appointments.booked, "moved": appointments.moved,
                         "cancelled": appointments.cancelled},
        "deliveries": delivery_indicators(deliveries),
        "escalations": escalation_indicators(escalations),
    }
