"""Escalation ladders: who to alert, by which channel, and how long to wait for an answer.

    escalations:
      astreinte:
        steps:
          - {to: on_call, channel: sms, wait: 10m}      # the person on call, by SMS…
          - {to: jean-martin, channel: sms, wait: 15m}  # …no acknowledgement in 10 min: Jean
          - {to: [jean-martin, lucas-martin], channel: email, wait: 30m}
        dead_end: {to: bureau@plomberie-martin.example}  # nobody answered: the office knows

A rule starts a ladder with ``- escalate: astreinte``. The engine (sync/) runs
it: it sends step 0 at once, and while nobody acknowledged, step *i + 1* when
step *i*'s ``wait`` is over; after the last step's wait, the ``dead_end``.
Waits are elapsed time (10 minutes are 10 minutes on a DST night). ``on_call``
is resolved when the step is sent (:meth:`LadderStep.recipients`), so a
handover during the escalation reaches the new person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mappings.recipients import Recipient, channel_connection, resolve_recipients
from mappings.schema import EscalationLadder, TenantConfig
from mappings.wallclock import local, require_aware

DEFAULT_TEMPLATE = "default"


@dataclass(frozen=True)
class LadderStep:
    index: int  # 0-based; the dead end is index len(steps)
    to: tuple[str, ...]  # as written: staff ids, on_call, addresses
    channel: str  # "email" or "sms"
    wait: timedelta  # before the next step (zero for the dead end)
    template: str
    connection: str  # "" for Relais's own sender
    provider: str
    dead_end: bool = False

    def recipients(self, config: TenantConfig, at: datetime) -> list[Recipient]:
        """The addresses this step goes to when sent at ``at`` (``on_call`` resolved then)."""
        found, _ = resolve_recipients(config, self.to, self.channel, require_aware(at))
        return found


@dataclass(frozen=True)
class Ladder:
    name: str
    steps: tuple[LadderStep, ...]
    dead_end: LadderStep

    def step(self, index: int) -> LadderStep:
        """Step ``index``; ``len(steps)`` is the dead end. IndexError past it."""
        if 0 <= index < len(self.steps):
            return self.steps[index]
        if index == len(self.steps):
            return self.dead_end
        raise IndexError(f"ladder {self.name!r} has {len(self.steps)} steps and a dead end")

    @property
    def total_wait(self) -> timedelta:
        """From the first step to the dead end, when nobody acknowledges."""
        return sum((s.wait for s in self.steps), timedelta())

    def fire_times(self, started: datetime) -> list[datetime]:
        """When each step, then the dead end, is sent if nobody acknowledges (UTC)."""
        moment = require_aware(started).astimezone(UTC)
        out = []
        for step in (*self.steps, self.dead_end):
            out.append(moment)
            moment = moment + step.wait
        return out


def _ladder(config: TenantConfig, name: str, spec: EscalationLadder) -> Ladder:
    steps = []
    for index, step in enumerate(spec.steps):
        connection, provider = channel_connection(config, step.channel, step.via)
        steps.append(
            LadderStep(
                index=index,
                to=tuple(step.to),
                channel=step.channel,
                wait=step.wait,
                template=step.template or DEFAULT_TEMPLATE,
                connection=connection,
                provider=provider,
            )
        )
    end = spec.dead_end
    connection, provider = channel_connection(config, end.channel, end.via)
    dead_end = LadderStep(
        index=len(steps),
        to=tuple(end.to),
        channel=end.channel,
        wait=timedelta(),
        template=end.template or DEFAULT_TEMPLATE,
        connection=connection,
        provider=provider,
        dead_end=True,
    )
    return Ladder(name=name, steps=tuple(steps), dead_end=dead_end)


def ladders(config: TenantConfig) -> dict[str, Ladder]:
    """Every escalation ladder of the tenant, by name."""
    return {name: _ladder(config, name, spec) for name, spec in config.escalations.items()}


def ladder(config: TenantConfig, name: str) -> Ladder:
    """The ladder ``name``; LookupError when the tenant has none of that name."""
    spec = config.escalations.get(name)
    if spec is None:
        known = ", ".join(config.escalations) or "none"
        raise LookupError(f"unknown escalation ladder {name!r}; known: {known}")
    return _ladder(config, name, spec)


_REPLY = {
    "fr": {
        "done": "Merci : alerte {label} prise en charge.",
        "unknown": "Aucune alerte {ref} en cours pour ce numéro.",
        "already": "Cette alerte était déjà prise en charge.",
        "open": " Encore en cours : {labels}. Répondez OK suivi du numéro pour chacune.",
        "none": " Plus aucune alerte en cours.",
    },
    "en": {
        "done": "Thank you: alert {label} acknowledged.",
        "unknown": "No alert {ref} is running for this number.",
        "already": "That alert was already acknowledged.",
        "open": " Still running: {labels}. Reply OK and the number for each.",
        "none": " No other alert is running.",
    },
}

Ladderref = tuple[int | None, str, datetime]  # (ref, ladder name, started at)


def ack_reply_text(config: TenantConfig, acknowledged: Ladderref | None,
                   unknown_ref: int | None, still_open: list[Ladderref]) -> str:
    """The SMS answering an "OK": which ladder it stopped (or that ``unknown_ref`` names
    none), then every ladder still open to that phone with its reference. Only refs,
    ladder names and start times (tenant's zone): nothing of the message itself."""
    words = _REPLY.get(str(config.language).split("-")[0], _REPLY["en"])

    def label(item: Ladderref) -> str:
        ref, name, started = item
        when = local(require_aware(started), config.zone).strftime("%H:%M")
        return f"{ref if ref is not None else '?'} ({name}, {when})"

    if acknowledged is not None:
        text = words["done"].format(label=label(acknowledged))
    elif unknown_ref is not None:
        text = words["unknown"].format(ref=unknown_ref)
    else:
        text = words["already"]
    if still_open:
        return text + words["open"].format(labels=", ".join(label(e) for e in still_open))
    return text + words["none"]
