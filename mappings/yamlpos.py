"""A YAML loader that remembers where every value came from.

Built on PyYAML's safe composer: the text is composed into nodes, then turned
into plain Python data (dict / list / str / int / float / bool / None / date)
while recording, for every path (``('staff', 1, 'phone')``), the line and
column of the value and of its key. Validation errors can then point at the
exact spot in the user's file.

Deliberate differences from ``yaml.safe_load``:

* **Duplicate keys are an error** (PyYAML silently keeps the last one).
* **YAML 1.2 scalars**: only ``true``/``false`` are booleans (``yes``, ``no``,
  ``on``, ``off``, ``NO`` stay text, so ``phone_region: NO`` means Norway);
  integers are plain decimals without a leading zero or ``+`` sign (so
  ``0612345678`` and ``+33612345678`` stay text), and ``09:30`` is text, not
  the YAML 1.1 sexagesimal number 570. Dates (``2025-12-25``) are dates.
* **Environment variables**: ``${NAME}`` in any text value is replaced by the
  variable's value; ``${NAME:-fallback}`` uses ``fallback`` when it is unset or
  empty; ``$$`` writes a literal ``$``. Keys are never interpolated. Only
  variables whose name starts with ``RELAIS_DEMO_`` or ``RELAIS_TENANT_`` are
  visible by default (a tenant file is uploaded by a client's admin and must
  not be able to read the server's secrets); callers may pass their own
  ``env`` mapping instead. An unset variable is an error naming it.
* Anchors, aliases and merge keys (``<<: *defaults``) work; recursive aliases,
  custom tags (``!foo``, ``!!python/...``, ``!!binary``, ``!!set``) and
  non-text keys are refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mappings.errors import ConfigError, ConfigIssue, Path, format_path

ENV_PREFIXES: tuple[str, ...] = ("RELAIS_DEMO_", "RELAIS_TENANT_")
MAX_VALUES = 50_000  # alias bombs ("billion laughs") stop here
MAX_DEPTH = 64

_TAG = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _INT, _FLOAT = (_TAG + t for t in ("str", "null", "bool", "int", "float"))
_TIMESTAMP, _MERGE, _SEQ, _MAP = (_TAG + t for t in ("timestamp", "merge", "seq", "map"))
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def public_environment() -> dict[str, str]:
    """The environment variables a tenant file may use (``RELAIS_DEMO_*``, ``RELAIS_TENANT_*``)."""
    return {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema implicit types (see module doc)."""

    yaml_implicit_resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}


def _timestamp_pattern() -> re.Pattern[str]:
    for tag, pattern in yaml.SafeLoader.yaml_implicit_resolvers["0"]:
        if tag == _TIMESTAMP:
            found: re.Pattern[str] = pattern
            return found
    raise RuntimeError("PyYAML has no timestamp resolver")  # pragma: no cover


_Loader.add_implicit_resolver(_NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(_INT, re.compile(r"^-?(?:0|[1-9][0-9]*)$"), list("-0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^-?(?:(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+)$"),
    list("-.0123456789"),
)
_Loader.add_implicit_resolver(_TIMESTAMP, _timestamp_pattern(), list("0123456789"))
_Loader.add_implicit_resolver(_MERGE, re.compile(r"^<<$"), ["<"])


@dataclass(frozen=True)
class Position:
    """1-based line/column of a value and, for a mapping entry, of its key."""

    line: int
    column: int
    key_line: int | None = None
    key_column: int | None = None
    scalar: bool = True

    def at(self, *, key: bool = False) -> tuple[int, int]:
        """Where to point: the key for keys and collections, the value for scalars."""
        if self.key_line is not None and self.key_column is not None:
            if key or not self.scalar:
                return self.key_line, self.key_column
        return self.line, self.column


@dataclass
class YamlDocument:
    """Plain data plus the position of every value in the source text."""

    filename: str
    data: Any
    positions: dict[Path, Position]
    lines: list[str] = field(default_factory=list)  # the source text, to point inside values

    def nearest(self, path: Path) -> tuple[Path, Position]:
        """The longest prefix of ``path`` that exists in the file, and its position."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(tuple(path[:end]))
            if found is not None:
                return tuple(path[:end]), found
        return (), Position(1, 1)

    def locate(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Line and column to report for ``path`` (its nearest existing ancestor if absent)."""
        found, position = self.nearest(path)
        if found != tuple(path):
            return position.at(key=True)  # a missing key: point at the parent's key
        return position.at(key=key)

    def locate_in_scalar(self, path: Path, lineno: int) -> tuple[int, int]:
        """Line and column of line ``lineno`` (1-based) of the text value at ``path``.

        A block scalar (``|`` or ``>``) starts on the line after its indicator; a
        ``>`` folded value is mapped line for line, which is approximate.
        """
        found, position = self.nearest(path)
        if found != tuple(path) or not position.scalar or lineno < 1:
            return self.locate(path)
        line, column = position.line, position.column
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        if source[column - 1 : column] in ("|", ">"):
            target = line + lineno
        elif lineno == 1:
            return line, column
        else:
            target = line + lineno - 1
        if target > len(self.lines):
            return line, column
        text = self.lines[target - 1]
        return target, len(text) - len(text.lstrip()) + 1

    def issue(
        self,
        path: Path,
        message: str,
        hint: str = "",
        code: str = "invalid",
        *,
        key: bool = False,
    ) -> ConfigIssue:
        line, column = self.locate(path, key=key)
        return ConfigIssue(self.filename, line, column, format_path(path), message, hint, code)


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(
        self, loader: _Loader, filename: str, lines: list[str], env: Mapping[str, str]
    ) -> None:
        self.loader = loader
        self.filename = filename
        self.lines = lines
        self.env = env
        self.positions: dict[Path, Position] = {}
        self.issues: list[ConfigIssue] = []
        self.count = 0
        self.stack: list[int] = []

    def fail(self, line: int, column: int, path: Path, message: str, hint: str, code: str) -> None:
        self.issues.append(
            ConfigIssue(self.filename, line, column, format_path(path), message, hint, code)
        )

    def build(self, node: Node, path: Path, key_node: Node | None = None) -> Any:
        line, column = _mark(node)
        key_line, key_column = _mark(key_node) if key_node is not None else (None, None)
        self.positions[path] = Position(
            line, column, key_line, key_column, scalar=isinstance(node, ScalarNode)
        )
        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooBig(line, column, path)
        if id(node) in self.stack:
            self.fail(line, column, path, "this alias refers to itself", "remove the loop", "yaml")
            return None
        if len(self.stack) >= MAX_DEPTH:
            self.fail(line, column, path, "nesting is too deep", "flatten the file", "yaml")
            return None
        self.stack.append(id(node))
        try:
            if isinstance(node, ScalarNode):
                return self.scalar(node, path)
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ:
                    self.unsupported_tag(node, path)
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self.mapping(node, path)
            raise AssertionError(f"unexpected node {node!r}")  # pragma: no cover
        finally:
            self.stack.pop()

    def unsupported_tag(self, node: Node, path: Path) -> None:
        line, column = _mark(node)
        self.fail(
            line,
            column,
            path,
            f"unsupported YAML tag {_short(node.tag)}",
            "remove the tag; write plain text, numbers, lists and mappings",
            "yaml",
        )

    def scalar(self, node: ScalarNode, path: Path) -> Any:
        tag, text = node.tag, node.value
        line, column = _mark(node)
        try:
            if tag == _STR:
                return self.interpolate(text, node, path)
            if tag == _NULL:
                return None
            if tag == _BOOL:
                return text.lower() == "true"
            if tag == _INT:
                return int(text, 10)
            if tag == _FLOAT:
                return float(text)
            if tag == _TIMESTAMP:
                return self.loader.construct_yaml_timestamp(node)
        except ValueError as exc:
            what = "date" if tag == _TIMESTAMP else _short(tag)
            self.fail(
                line,
                column,
                path,
                f"{text!r} is not a valid {what} ({exc})",
                "write a date as YYYY-MM-DD"
                if tag == _TIMESTAMP
                else "quote it to keep it as text",
                "yaml",
            )
            return None
        self.unsupported_tag(node, path)
        return None

    def interpolate(self, text: str, node: ScalarNode, path: Path) -> str:
        if "$" not in text:
            return text
        out: list[str] = []
        i = 0
        while (j := text.find("$", i)) >= 0:
            out.append(text[i:j])
            following = text[j + 1 : j + 2]
            if following == "$":
                out.append("$")
                i = j + 2
                continue
            if following != "{":
                out.append("$")
                i = j + 1
                continue
            end = text.find("}", j + 2)
            if end < 0:
                self.env_issue(node, path, text[j:], f"unclosed {text[j:]!r}", "close it: ${NAME}")
                out.append(text[j:])
                i = len(text)
                break
            expression = text[j + 2 : end]
            name, has_default, default = expression.partition(":-")
            if not _ENV_NAME.fullmatch(name):
                self.env_issue(
                    node,
                    path,
                    text[j : end + 1],
                    f"{text[j : end + 1]!r} is not a valid variable reference",
                    "write ${NAME} or ${NAME:-default} with NAME made of letters, digits and _; "
                    "write $$ for a literal $",
                )
            elif self.env.get(name):
                out.append(self.env[name])
            elif has_default:
                out.append(default)
            elif name in self.env:
                out.append("")  # set but empty, and no default: keep the empty value
            elif not name.startswith(ENV_PREFIXES):
                self.env_issue(
                    node,
                    path,
                    text[j : end + 1],
                    f"environment variable {name} cannot be used in a tenant file",
                    "only variables whose name starts with "
                    + " or ".join(ENV_PREFIXES)
                    + f" are visible, e.g. RELAIS_TENANT_{name}",
                    code="env_not_allowed",
                )
            else:
                self.env_issue(
                    node,
                    path,
                    text[j : end + 1],
                    f"environment variable {name} is not set",
                    f"set {name} in the environment of the server, "
                    f"or give a fallback: ${{{name}:-value}}",
                    code="env_unset",
                )
            i = end + 1
        out.append(text[i:])
        return "".join(out)

    def env_issue(
        self, node: ScalarNode, path: Path, needle: str, message: str, hint: str, code: str = "env"
    ) -> None:
        line, column = _mark(node)
        if node.start_mark.line == node.end_mark.line and 0 < line <= len(self.lines):
            found = self.lines[line - 1].find(needle, column - 1)
            if found >= 0:
                column = found + 1
        self.fail(line, column, path, message, hint, code)

    def mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        if node.tag != _MAP:
            self.unsupported_tag(node, path)
        explicit, merged = self.pairs(node, path)
        result: dict[str, Any] = {}
        first_seen: dict[str, int] = {}
        for key_node, value_node in explicit:
            key = self.key(key_node, path)
            if key is None:
                continue
            if key in first_seen:
                line, column = _mark(key_node)
                self.fail(
                    line,
                    column,
                    (*path, key),
                    f"duplicate key {key!r}",
                    f"{key!r} is already set on line {first_seen[key]}; keep only one of them",
                    "duplicate_key",
                )
                continue
            first_seen[key] = _mark(key_node)[0]
            result[key] = self.build(value_node, (*path, key), key_node)
        for key_node, value_node in merged:  # merged defaults never override
            key = self.key(key_node, path)
            if key is not None and key not in result:
                result[key] = self.build(value_node, (*path, key), key_node)
        return result

    def key(self, key_node: Node, path: Path) -> str | None:
        if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE:
            return str(key_node.value)
        line, column = _mark(key_node)
        self.fail(line, column, path, "a key must be plain text", "write `name: value`", "yaml")
        return None

    def pairs(
        self, node: MappingNode, path: Path, seen: frozenset[int] = frozenset()
    ) -> tuple[list[tuple[Node, Node]], list[tuple[Node, Node]]]:
        """Explicit entries, and entries brought in by ``<<`` merge keys (in precedence order)."""
        explicit: list[tuple[Node, Node]] = []
        merged: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                explicit.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in sources:
                line, column = _mark(source)
                if not isinstance(source, MappingNode):
                    self.fail(
                        line,
                        column,
                        path,
                        "`<<` merges only mappings",
                        "write `<<: *anchor` where the anchor is a mapping",
                        "yaml",
                    )
                elif id(source) in seen or id(node) == id(source):
                    self.fail(line, column, path, "this merge refers to itself", "", "yaml")
                else:
                    inner, inner_merged = self.pairs(source, path, seen | {id(node)})
                    merged.extend(inner + inner_merged)
        return explicit, merged


class _TooBig(Exception):
    def __init__(self, line: int, column: int, path: Path) -> None:
        self.line, self.column, self.path = line, column, path


_SYNTAX_HINTS: list[tuple[str, str]] = [
    ("'\\t'", "indent with spaces, never tabs"),
    ("mapping values are not allowed", "quote values that contain ': ', or check the indentation"),
    ("expected <block end>", "check the indentation of this line and of the lines above it"),
    ("could not find expected ':'", "write `key: value`, with a space after the colon"),
    ("found undefined alias", "define the anchor (&name) before using the alias (*name)"),
    ("expected a single document", "keep one document per file: remove the extra `---`"),
    ("found unexpected end of stream", "close the quote or bracket opened here"),
    ("while scanning a quoted scalar", "close the quote opened here"),
    ("found character '@'", "quote values starting with @ or `"),
    ("found character '`'", "quote values starting with @ or `"),
    ("cannot contain the character", "remove this invisible control character"),
]


def _syntax_issue(exc: yaml.YAMLError, filename: str, text: str) -> ConfigIssue:
    line, column = 1, 1
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and "end of stream" in (exc.problem or ""):
            mark = exc.context_mark  # point at the quote or bracket left open
        if mark is not None:
            line, column = mark.line + 1, mark.column + 1
        parts = [p for p in (exc.context, exc.problem) if p]
        message = "YAML syntax error: " + ("; ".join(parts) if parts else "invalid YAML")
    elif isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        message = f"YAML cannot contain the character {chr(exc.character)!r}"
    else:  # pragma: no cover - PyYAML raises marked errors
        message = f"YAML syntax error: {exc}"
    hint = next(
        (h for needle, h in _SYNTAX_HINTS if needle in message),
        "check the indentation and the quoting on this line and the one above",
    )
    return ConfigIssue(filename, line, column, "", message, hint, "yaml_syntax")


def load_yaml(
    text: str, filename: str = "<config>", env: Mapping[str, str] | None = None
) -> YamlDocument:
    """Parse one YAML document, keeping positions; raise ConfigError on any problem."""
    environment = public_environment() if env is None else env
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # a character YAML does not allow
        raise ConfigError([_syntax_issue(exc, filename, text)]) from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise ConfigError([_syntax_issue(exc, filename, text)]) from None
        except RecursionError:
            raise ConfigError(
                [ConfigIssue(filename, 1, 1, "", "nesting is too deep", "", "yaml")]
            ) from None
        if root is None:
            raise ConfigError(
                [
                    ConfigIssue(
                        filename,
                        1,
                        1,
                        "",
                        "the file is empty",
                        "start from one of the files in examples/",
                        "empty",
                    )
                ]
            )
        builder = _Builder(loader, filename, text.splitlines(), environment)
        try:
            data = builder.build(root, ())
        except _TooBig as big:
            raise ConfigError(
                [
                    ConfigIssue(
                        filename,
                        big.line,
                        big.column,
                        format_path(big.path),
                        f"the document expands to more than {MAX_VALUES} values",
                        "use fewer aliases",
                        "yaml",
                    )
                ]
            ) from None
    finally:
        loader.dispose()
    if builder.issues:
        raise ConfigError(builder.issues)
    return YamlDocument(filename, data, builder.positions, builder.lines)
