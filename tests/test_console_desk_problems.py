"""The desk's refusals are French sentences naming the form's field by its label
(English from the catalogue), never the engine's English: a missing subject, a bad
number, an intake answer of the wrong type, a required intake answer; the preview's
unknown call type or urgency."""

from __future__ import annotations

from test_console_users import PASSWORD, csrf_of, signed_in_client

from relais.console.users import create_user
from sync.store.db import session_scope
from sync.tenants import apply_config

YAML = ("id: alpha\nname: Alpha\ntimezone: Europe/Paris\nphone_region: FR\n"
        "forwarding_numbers: ['04 72 00 00 11']\n"
        "call_types:\n  - id: message\n    label: Message\n    intake_fields:\n"
        "      - {name: pieces, label: Nombre de pièces, type: number}\n"
        "      - {name: motif, label: Motif, type: choice, choices: [fuite, panne],"
        " required: true}\n"
        "connections:\n  hook: {provider: webhook, url: http://127.0.0.1:9/h}\n"
        "rules:\n  default:\n    then: [{connection: hook}]\n")


def _items(html: str) -> dict[str, str]:
    """``data-field`` → the item's text."""
    found = {}
    for chunk in html.split('data-field="')[1:]:
        field, rest = chunk.split('"', 1)
        found[field] = rest.split("</li>")[0].split("</p>")[0]
    return found


def test_desk_problems_are_french_sentences_naming_the_field(env):
    with session_scope() as session:
        apply_config(session, YAML, "alpha.yaml", actor="t")
        create_user(session, "s@r.test", "Sophie", "secretary", PASSWORD)
    client, _ = signed_in_client("s@r.test")
    page = client.get("/desk?tenant=alpha").text
    form = {"csrf_token": csrf_of(page), "call_type": "message", "urgency": "normal",
            "idempotency_key": page.split('name="idempotency_key" value="')[1].split('"')[0],
            "caller.name": "Jeanne Martin", "caller.phone": "06 12", "subject": "",
            "intake.motif": "fuite", "intake.pieces": "trois"}
    refused = client.post("/t/alpha/desk/send", data=form)
    assert refused.status_code == 422
    items = _items(refused.text)
    assert "<strong>Objet</strong> — Ce champ est obligatoire." in items["subject"]
    assert "<strong>Téléphone</strong> — Numéro invalide" in items["caller.phone"]
    assert "Field required" not in refused.text and "value_error" not in refused.text

    fixed = {**form, "subject": "Fuite", "caller.phone": "06 12 34 56 78"}
    number = client.post("/t/alpha/desk/send", data=fixed)
    assert number.status_code == 422
    assert ("<strong>Nombre de pièces</strong> — Un nombre est attendu"
            in _items(number.text)["intake.pieces"])
    assert "is not a number" not in number.text
    required = client.post("/t/alpha/desk/send",
                           data={**fixed, "intake.pieces": "3", "intake.motif": ""})
    assert "<strong>Motif</strong> — Ce champ est obligatoire." in _items(
        required.text)["intake.motif"]

    preview = client.post("/t/alpha/desk/preview", data={**fixed, "urgency": "asap"})
    assert "<strong>Urgence</strong> — Urgence inconnue" in _items(preview.text)["urgency"]
    unknown = client.post("/t/alpha/desk/preview", data={**fixed, "call_type": "nope"})
    assert "Type d&#39;appel inconnu" in _items(unknown.text)["call_type"]
    assert "unknown" not in unknown.text

    client.cookies.set("relais_lang", "en")
    english = client.post("/t/alpha/desk/send", data=form)
    assert "This field is required." in _items(english.text)["subject"]
    assert "Invalid number" in _items(english.text)["caller.phone"]
