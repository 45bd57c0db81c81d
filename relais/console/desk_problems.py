"""The desk's validation problems as sentences a secretary reads: French first
(English in the catalogue), each naming the form's field by its label.

The engine (``sync.domain.CallMessage``, ``sync.outbox``, ``mappings.plan``) speaks
English to API clients; the desk does not show that text. It maps what went wrong
(the field, pydantic's error type, the intake field's declared type) to a marked
sentence, translated when the page is rendered: ``{{ _(p.label) }}`` and
``{{ _(p.problem) }}``. An intake field's label is the tenant's own text (shown as
written, as on the form). Anything unforeseen gets a generic French sentence,
never the engine's English.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from mappings.config import TenantConfig
from mappings.plan import URGENCY_LEVELS
from relais.console.i18n import _

Problem = dict[str, str]

LABELS = {
    "call_type": _("Type d'appel"), "urgency": _("Urgence"), "staff_id": _("Pour"),
    "caller": _("Appelant"), "caller.name": _("Nom"), "caller.phone": _("Téléphone"),
    "caller.email": _("E-mail"), "caller.company": _("Société"), "subject": _("Objet"),
    "body": _("Message"), "taken_at": _("Heure de l'appel"), "message": _("Message"),
}  # fmt: skip

REQUIRED = _("Ce champ est obligatoire.")
TOO_LONG = _("Ce texte est trop long : raccourcissez-le.")
REFUSED = _("Valeur refusée : vérifiez ce champ.")
BY_FIELD = {
    "caller.phone": _("Numéro invalide : écrivez-le comme 06 12 34 56 78 ou +33 6 12 34 56 78."),
    "caller.email": _("Adresse e-mail invalide : écrivez-la comme nom@exemple.fr."),
    "caller": _("Indiquez au moins le nom de l'appelant."),
    "urgency": _("Urgence inconnue : choisissez-en une dans la liste."),
    "call_type": _("Type d'appel inconnu : choisissez-en un dans la liste."),
    "staff_id": _("Destinataire inconnu : choisissez-en un dans la liste."),
}  # fmt: skip
INTAKE_BY_TYPE = {
    "number": _("Un nombre est attendu, comme 3 ou 2,5."),
    "date": _("Une date est attendue, comme 2026-12-24."),
    "choice": _("Choisissez une des réponses proposées."),
    "bool": _("Cochez ou décochez la case."),
    "text": _("Un texte est attendu."),
}  # fmt: skip
NO_RULE = _("Aucune règle ne s'applique à ce type d'appel : demandez à l'administrateur du "
            "client d'en ajouter une.")
REJECTED = _("Le message n'a pas pu être accepté tel quel : prévenez l'administrateur du "
             "client.")
REUSED = _("Cet appel a déjà été envoyé avec un autre contenu : ouvrez un nouvel appel.")
PREVIEW_FAILED = _("L'aperçu n'a pas pu être calculé : vérifiez le type d'appel, l'urgence et "
                   "le destinataire.")


def _label(config: TenantConfig, call_type: str, field: str) -> str:
    if field.startswith("intake."):
        chosen = config.call_type(call_type)
        for spec in chosen.intake_fields if chosen else []:
            if field == f"intake.{spec.name}":
                return spec.label
        return field[len("intake."):]
    return LABELS.get(field, field)


def _intake_type(config: TenantConfig, call_type: str, field: str) -> str | None:
    chosen = config.call_type(call_type)
    for spec in chosen.intake_fields if chosen else []:
        if field == f"intake.{spec.name}":
            return str(spec.type)
    return None


def problem(config: TenantConfig, call_type: str, field: str, kind: str = "") -> Problem:
    """One problem: ``field`` as the API names it, its label, a French sentence.
    ``kind``: pydantic's error type, or ``required``, ``no_rule``, ``reused``."""
    if kind in ("missing", "string_too_short", "required"):
        sentence = REQUIRED
    elif kind == "string_too_long":
        sentence = TOO_LONG
    elif kind == "no_rule":
        sentence = NO_RULE
    elif kind == "reused":
        sentence = REUSED
    elif field.startswith("intake."):
        sentence = INTAKE_BY_TYPE.get(_intake_type(config, call_type, field) or "", REFUSED)
    else:
        sentence = BY_FIELD.get(field, REFUSED if field in LABELS else REJECTED)
    return {"field": field, "label": _label(config, call_type, field), "problem": sentence}


def from_validation(config: TenantConfig, call_type: str,
                    exc: ValidationError) -> list[Problem]:
    """pydantic's errors of ``CallMessage``, one per field (the first for each)."""
    seen: dict[str, Problem] = {}
    for error in exc.errors():
        loc = [str(p) for p in error["loc"] if not str(p).startswith("function-")]
        field = ".".join(loc) or "message"
        seen.setdefault(field, problem(config, call_type, field, str(error["type"])))
    return list(seen.values())


def rejected(config: TenantConfig, call_type: str, field: str, text: str) -> Problem:
    """``sync.outbox.MessageRejected``: its field, and what its English says went wrong
    (required, no rule), else the field's own sentence."""
    if "is required" in text:
        kind = "required"
    elif text.startswith("no rule routes"):
        kind = "no_rule"
    else:
        kind = ""
    return problem(config, call_type, field, kind)


def preview_problem(config: TenantConfig, form: dict[str, Any]) -> Problem | None:
    """What ``mappings.plan.plan_for`` would refuse in the form, checked before it, the
    same checks in the same order (call type, urgency, staff member)."""
    call_type = str(form.get("call_type", ""))
    if config.call_type(call_type) is None:
        return problem(config, call_type, "call_type")
    urgency = form.get("urgency") or None
    if urgency is not None and urgency not in URGENCY_LEVELS:
        return problem(config, call_type, "urgency")
    staff = form.get("staff_id") or None
    if staff is not None and config.staff_member(staff) is None:
        return problem(config, call_type, "staff_id")
    return None
