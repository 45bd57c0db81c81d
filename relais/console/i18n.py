"""The console's languages: French first (the source strings), English by catalogue
(and a French one for strings shown from data: urgency levels, statuses, roles).

Catalogues are gettext ``.po`` files under ``relais/console/locale/<lang>/LC_MESSAGES``
(edited by hand or with ``pybabel update``); they are compiled in memory with
``babel`` when first used, so no compiled ``.mo`` file can go stale. A string with
no translation shows in French.
"""

from __future__ import annotations

import gettext
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES = Path(__file__).parent / "locale"
LANGUAGES = ("fr", "en")
DEFAULT = "fr"


def catalogue_path(lang: str) -> Path:
    return LOCALES / lang / "LC_MESSAGES" / "messages.po"


@lru_cache(maxsize=len(LANGUAGES))
def translations(lang: str) -> gettext.NullTranslations:
    path = catalogue_path(lang)
    if not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def pick(lang: str | None) -> str:
    return lang if lang in LANGUAGES else DEFAULT


def _(text: str) -> str:
    """Marks a string for extraction (``pybabel extract -k _``); translated when shown."""
    return text


# Strings the templates translate from data (urgency levels, delivery statuses, roles,
# channels): listed here so that extraction sees them.
DYNAMIC = (
    _("low"), _("normal"), _("high"), _("urgent"),
    _("pending"), _("in_flight"), _("delivered"), _("dead"),
    _("operator admin"), _("secretary"), _("tenant admin"), _("client"),
    _("email"), _("digest"),
)
