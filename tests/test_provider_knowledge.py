"""Provider knowledge lives in ``connectors/`` (and its catalogue): the engine and
the shell never branch on a provider's name. Read from the source's tokens, so a
name in a comment or a docstring is no finding."""

from __future__ import annotations

import io
import tokenize

from conftest import ROOT

NAMES = {"google_calendar", "outlook", "hubspot", "salesforce"}
# The demo wires the sandbox's emulators to the sample connections of each provider.
ALLOWED = {"relais/demo.py", "relais/demo_crm.py"}


def findings(text: str, name: str) -> list[str]:
    """Every string literal naming a provider (``provider == "outlook"``, ``provider
    in ("hubspot", …)``, a registry keyed by name…), docstrings excepted."""
    found = []
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    for position, token in enumerate(tokens):
        if token.type != tokenize.STRING:
            continue
        before = tokens[position - 1].type if position else tokenize.NEWLINE
        if before in (tokenize.INDENT, tokenize.NEWLINE, tokenize.NL):
            continue  # a docstring (a statement that is only a string)
        if token.string.strip("\"'") in NAMES:
            found.append(f"{name}:{token.start[0]}: {token.line.strip()}")
    return found


def test_no_provider_name_is_compared_outside_connectors() -> None:
    found = [
        finding
        for package in ("sync", "relais")
        for path in sorted((ROOT / package).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in ALLOWED
        for finding in findings(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert not found, "provider names outside connectors/:\n" + "\n".join(found)


def test_the_guard_sees_a_branch_and_ignores_docstrings() -> None:
    probe = ('def f(p):\n    """outlook, "outlook" in a docstring are fine"""\n'
             '    # "hubspot" in a comment too\n'
             '    if p.provider == "outlook":\n        return 1\n'
             '    return p.provider in ("hubspot", "webhook")\n')
    assert [f.split(":")[1] for f in findings(probe, "probe")] == ["4", "6"]
