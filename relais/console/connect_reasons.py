"""Why connecting failed, in the viewer's language.

The engine (``sync.connections.ConnectError``: a code and the offending field) and
the OAuth callback (``relais.api.connections``: its public error code, the field,
the provider's own words) say why in English for machines; the connections page
shows one of these French sentences instead, translated by the catalogue when the
viewer reads English. The provider's own words (``error_description``) are shown
beside it as they came: they are the provider's text, not ours.

Invariant: every engine code (``sync.connections.CODES``) and every public code
the callback sends back has a sentence here (``tests/test_console_operator.py``).
"""

from __future__ import annotations

from relais.console.i18n import _
from sync.connections import AMBIGUOUS, CANNOT_CONNECT, INVALID_STATE, NOT_FOUND

NO_APP = _("Aucune application OAuth n'est enregistrée pour ce fournisseur : l'opérateur "
           "doit l'enregistrer avant que la connexion soit possible.")
UNKNOWN = _("La connexion n'a pas abouti : relancez-la, ou prévenez l'opérateur si cela "
            "se répète.")
UNAVAILABLE = _("Le fournisseur ne répond pas pour le moment : rien n'a été changé, "
                "réessayez dans quelques minutes.")

# Engine codes (a refused start, connect or disconnect).
ENGINE = {
    NOT_FOUND: _("Cette connexion n'existe plus : rechargez la page."),
    AMBIGUOUS: _("Plusieurs connexions répondent à ce nom : choisissez celle à connecter."),
    INVALID_STATE: _("Ce lien d'autorisation n'est plus valable (déjà utilisé ou expiré) : "
                     "relancez la connexion."),
    CANNOT_CONNECT: _("Cette connexion ne passe pas par OAuth : il n'y a rien à autoriser "
                      "ni à révoquer."),
}

# The callback's public codes (``relais.api.engine_errors.CONNECT`` and its own).
CALLBACK = {
    "authorization_refused": _("Le fournisseur a refusé l'autorisation (consentement "
                               "refusé ou annulé)."),
    "invalid_request": _("Ce lien d'autorisation n'est plus valable (déjà utilisé, expiré "
                         "ou incomplet) : relancez la connexion."),
    "provider_unavailable": UNAVAILABLE,
    "not_found": ENGINE[NOT_FOUND],
    "cannot_connect": _("Le fournisseur n'a pas accepté la connexion : relancez-la."),
}

FIELDS = {"client_id": NO_APP,
          "return_to": _("L'adresse de retour vers la console a été refusée.")}


def engine_reason(code: str, field: str | None) -> str:
    """The French msgid for a :class:`sync.connections.ConnectError`."""
    return FIELDS.get(field or "") or ENGINE.get(code, UNKNOWN)


def callback_reason(code: str, field: str = "") -> str:
    """The French msgid for the outcome the OAuth callback sent back."""
    return FIELDS.get(field) or CALLBACK.get(code, UNKNOWN)
