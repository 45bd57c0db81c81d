"""One staff member's calendar set in the tenant's YAML text, everything else kept
byte for byte (comments, order, quoting, ``${VARIABLES}``).

Why a text edit: the stored YAML is what the admin wrote and what the Configuration
tab shows, diffs and rolls back; dumping a parsed tree would drop the comments and
rewrite the whole file. The edit finds the nodes with PyYAML's composer (their
marks give exact offsets) and replaces only the scalars of ``calendar.connection``
and ``calendar.id``, or adds a ``calendar:`` entry when the member has none. The
result is validated by the caller (``sync.tenants.apply_config``) like any file.
"""

from __future__ import annotations

import json
import re

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+\-]*")


class StaffEditError(ValueError):
    """The file cannot be edited for this member (``field`` names what is wrong)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def scalar(value: str) -> str:
    """``value`` as a YAML scalar: plain when it is a simple word, else double-quoted
    (JSON's quoting is valid YAML)."""
    if PLAIN.fullmatch(value) and value.lower() not in ("null", "true", "false", "yes",
                                                          "no", "on", "off", "~"):
        return value
    return json.dumps(value)


def _get(mapping: MappingNode, key: str) -> tuple[ScalarNode, Node] | None:
    for k, v in mapping.value:
        if isinstance(k, ScalarNode) and k.value == key:
            return k, v
    return None


def _member(text: str, staff_id: str) -> MappingNode:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise StaffEditError("yaml", f"the stored file does not parse: {exc}") from None
    staff = _get(root, "staff") if isinstance(root, MappingNode) else None
    if staff is None or not isinstance(staff[1], SequenceNode):
        raise StaffEditError("staff", "the file has no staff list")
    for item in staff[1].value:
        if isinstance(item, MappingNode):
            found = _get(item, "id")
            if found is not None and isinstance(found[1], ScalarNode) and \
                    found[1].value == staff_id:
                return item
    raise StaffEditError("staff", f"no staff member {staff_id!r}")


def set_staff_calendar(text: str, staff_id: str, connection: str, calendar_id: str) -> str:
    """``text`` with staff member ``staff_id``'s calendar set to ``connection`` /
    ``calendar_id``; :class:`StaffEditError` if the member is not in the file."""
    if not connection.strip():
        raise StaffEditError("connection", "choose a calendar connection")
    if not calendar_id.strip():
        raise StaffEditError("calendar_id", "give the calendar id (or mailbox)")
    member = _member(text, staff_id)
    wanted = {"connection": connection.strip(), "id": calendar_id.strip()}
    flow = f"{{connection: {scalar(wanted['connection'])}, id: {scalar(wanted['id'])}}}"
    edits: list[tuple[int, int, str]] = []
    found = _get(member, "calendar")
    if found is not None and isinstance(found[1], MappingNode):
        calendar = found[1]
        for key, value in wanted.items():
            pair = _get(calendar, key)
            if pair is None or not isinstance(pair[1], ScalarNode):
                raise StaffEditError("calendar", f"the member's calendar has no {key} to change")
            node = pair[1]
            edits.append((node.start_mark.index, node.end_mark.index, scalar(value)))
    elif found is not None:  # ``calendar:`` with nothing (or null): the value replaced
        node = found[1]
        start, end = node.start_mark.index, node.end_mark.index
        if start == end:  # an empty value: after the key's colon
            start = end = text.index(":", found[0].end_mark.index) + 1
            flow = " " + flow
        edits.append((start, end, flow))
    elif member.flow_style:  # ``- {id: x, name: y}``: before the closing brace
        close = text.rindex("}", 0, member.end_mark.index)
        edits.append((close, close, f", calendar: {flow}"))
    else:  # a block mapping: a new line after the member's id, at the keys' column
        key, value = _get(member, "id")  # type: ignore[misc]
        line_end = text.find("\n", value.end_mark.index)
        line_end = len(text) if line_end < 0 else line_end
        column = key.start_mark.column
        edits.append((line_end, line_end, "\n" + " " * column + f"calendar: {flow}"))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text
