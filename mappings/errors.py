"""Configuration errors that point at a file, a line and a column.

Every problem found in a tenant file becomes one :class:`ConfigIssue`; a
:class:`ConfigError` carries all of them at once so an admin fixes a whole
file in one round trip. ``str(err)`` is one issue per line, compiler style::

    examples/cabinet-durand.yaml:14:12: staff[1].phone: '06 12' is not a valid phone number
    for region FR — write it as +33612345678 or 06 12 34 56 78
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

Path = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_path(path: Sequence[str | int]) -> str:
    """``('staff', 1, 'phone')`` → ``staff[1].phone``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: where it is, what is wrong, and what to write instead.

    ``line`` and ``column`` are 1-based. ``path`` is the dotted path of the
    offending value (``""`` for the whole document). ``code`` is a stable
    machine-readable kind (``unknown_key``, ``invalid_phone``, ``yaml_syntax``…).
    """

    file: str
    line: int
    column: int
    path: str
    message: str
    hint: str = ""
    code: str = "invalid"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}: "
        what = f"{self.path}: {self.message}" if self.path else self.message
        return where + what + (f" — {self.hint}" if self.hint else "")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ConfigError(Exception):
    """A tenant configuration was refused; ``issues`` says every reason."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        unique = dict.fromkeys(issues)  # de-duplicate, keep order
        self.issues: list[ConfigIssue] = sorted(unique, key=lambda i: (i.line, i.column))
        if not self.issues:
            raise ValueError("ConfigError needs at least one issue")
        super().__init__(self.issues)  # picklable: ConfigError(self.issues) rebuilds it

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)

    def as_json(self) -> list[dict[str, Any]]:
        """The issues as JSON-ready dicts (file, line, column, path, message, hint, code)."""
        return [issue.as_dict() for issue in self.issues]


def did_you_mean(value: str, choices: list[str] | tuple[str, ...], *, prefix: str = "") -> str:
    """``"did you mean 'x'? "`` when ``value`` is close to one of ``choices``, else ``""``."""
    folded = {c.casefold(): c for c in choices}
    if value.casefold() in folded and folded[value.casefold()] != value:
        return f"did you mean {folded[value.casefold()]!r}? {prefix}"
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? {prefix}" if close else prefix
