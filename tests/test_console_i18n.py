"""The console's catalogues: every string the templates and code mark is translated
into English (French is the source), and nothing stale lingers in the catalogue."""

from __future__ import annotations

import ast
import re

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from conftest import ROOT

from relais.console import i18n

CONSOLE = ROOT / "relais" / "console"
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2")]


def marked() -> set[str]:
    return {message for _file, _line, message, _comments, _context
            in extract_from_dir(str(CONSOLE), METHODS, keywords={"_": None})
            if isinstance(message, str)}


def test_english_catalogue_is_complete_and_current():
    with i18n.catalogue_path("en").open("rb") as fh:
        catalogue = {m.id: m.string for m in read_po(fh) if m.id}
    strings = marked()
    assert len(strings) > 50
    untranslated = sorted(s for s in strings if not catalogue.get(s))
    assert not untranslated, f"add to locale/en/LC_MESSAGES/messages.po: {untranslated}"
    stale = sorted(set(catalogue) - strings)
    assert not stale, f"no longer used, remove from the catalogue: {stale}"


def test_the_catalogue_defines_each_msgid_once():
    """Babel keeps the last of two definitions silently (GNU msgfmt refuses them): a
    merged catalogue once held "à traiter" twice with two meanings."""
    text = i18n.catalogue_path("en").read_text(encoding="utf-8")
    ids = re.findall(r'^(?:msgctxt (".*")\n)?msgid (".*")$', text, re.M)
    repeated = sorted({i for i in ids if ids.count(i) > 1 and i != ("", '""')})
    assert not repeated, f"defined twice in the English catalogue: {repeated}"


def test_translations_switch_with_the_language():
    assert i18n.translations("en").gettext("Se connecter") == "Sign in"
    assert i18n.translations("fr").gettext("Se connecter") == "Se connecter"
    assert i18n.translations("fr").gettext("urgent") == "urgente"
    assert i18n.pick("de") == "fr" and i18n.pick("en") == "en"


# Words of English that French never writes: a msgid holding one was written in
# English (msgids are French first; English lives in the msgstr).
ENGLISH_WORDS = frozenset(
    "the and is are of to with your this from not for please must was were has have been "
    "will cannot could should which when there their what yes an be by no or it its "
    "save cancel delete send search sign new edit open closed today week slot slots staff "
    "caller appointment appointments connection connections delivery deliveries error "
    "failed sent shown try again unknown invalid".split())


def english_words(msgid: str) -> set[str]:
    return set(re.findall(r"[^\W\d_]+", msgid.lower())) & ENGLISH_WORDS  # "présentés" is no "sent"


def test_the_english_detector_catches_an_english_msgid():
    assert english_words("Send the message") == {"send", "the"}
    assert english_words("role must be one of admin, secretary") == {"must", "be", "of"}
    assert not english_words("Envoyer le message à l'astreinte")
    assert not english_words("Les connexions en échec : relancez-les.")


def test_msgids_are_french():
    """A string marked for translation is written in French; the English goes in the
    catalogue. Data shown through the catalogue (statuses, roles) is the exception."""
    english = sorted(s for s in marked() - set(i18n.DYNAMIC) if english_words(s))
    assert not english, f"write these in French (English in messages.po): {english}"


def unmarked_sentences(source: str) -> list[int]:
    """Lines where console code hands a page a sentence nobody can translate: an
    f-string, a literal sentence or ``str(exc)`` (the engine's English) as an
    ``"error"`` / ``"note"`` / ``"problem"`` value or as a :class:`ConsoleError`
    message (codes such as ``"not_found"`` are fine)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        values: list[ast.expr] = []
        if isinstance(node, ast.Dict):
            values = [v for k, v in zip(node.keys, node.values, strict=True)
                      if isinstance(k, ast.Constant) and k.value in ("error", "note", "problem")]
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ConsoleError"
              and len(node.args) > 1):
            values = [node.args[1]]
        found += [v.lineno for v in values if isinstance(v, ast.JoinedStr)
                  or (isinstance(v, ast.Constant) and " " in str(v.value))
                  or (isinstance(v, ast.Call) and getattr(v.func, "id", "") == "str")]
    return found


def test_console_code_hands_pages_translatable_sentences():
    probe = ('ConsoleError(422, f"date: {raw!r} is not a date")\n'
             'x = {"error": "role must be admin"}\nConsoleError(404, "not_found")\n'
             'y = {"error": _("Rôle inconnu.")}\n'
             'z = {"field": "message", "problem": str(exc)}\n')
    assert unmarked_sentences(probe) == [1, 2, 5]
    found = [f"{path.name}:{line}" for path in sorted(CONSOLE.glob("*.py"))
             for line in unmarked_sentences(path.read_text())]
    assert not found, f"mark these with _() in French: {found}"
