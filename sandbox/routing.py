"""A routing table over path segments: the emulators' dispatch as data.

The emulators match on the *raw* path split into unquoted segments (an id may
hold an encoded ``/``, which Starlette's decoded ``path`` would split), and each
answers an unknown path with its provider's own 404 body. Starlette's router
does neither, so this small table does: a pattern is segments separated by
``/``; ``{name}`` captures one segment, a last ``{name*}`` captures the rest
(possibly none) as a list, ``{name+}`` the rest (at least one). Methods are a
``|``-separated list or ``*`` (any). The first matching route wins. With
``fold_case`` literal segments match in any case (Graph's are case-insensitive)
while captures keep the case they were sent in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import unquote

__all__ = ["Match", "RouteTable", "segments"]

H = TypeVar("H", bound=Callable[..., Any])


def segments(raw_path: str, prefix: str = "") -> list[str]:
    """The unquoted, non-empty segments of ``raw_path`` (query dropped) after ``prefix``."""
    path = raw_path.split("?", 1)[0][len(prefix) :]
    return [unquote(p) for p in path.split("/") if p]


@dataclass(frozen=True)
class Match(Generic[H]):
    handler: H
    params: dict[str, Any]


@dataclass(frozen=True)
class _Route(Generic[H]):
    methods: frozenset[str] | None  # None: any method
    literal: tuple[str | None, ...]  # None: a one-segment capture
    names: tuple[str | None, ...]
    rest: str | None  # name of the trailing capture
    rest_min: int
    handler: H


class RouteTable(Generic[H]):
    """``RouteTable([("GET", "crm/v3/objects/{type}/{rest*}", handler), ...])``."""

    def __init__(self, routes: Iterable[tuple[str, str, H]], *, fold_case: bool = False) -> None:
        self._fold = fold_case
        self._routes: list[_Route[H]] = []
        for methods, pattern, handler in routes:
            parts = [p for p in pattern.split("/") if p]
            if fold_case:
                parts = [p if p.startswith("{") else p.lower() for p in parts]
            rest, rest_min = None, 0
            if parts and parts[-1].startswith("{") and parts[-1][-2:] in ("*}", "+}"):
                rest, rest_min = parts[-1][1:-2], 1 if parts[-1].endswith("+}") else 0
                parts = parts[:-1]
            capture = [p.startswith("{") and p.endswith("}") for p in parts]
            pairs = list(zip(parts, capture, strict=True))
            self._routes.append(
                _Route(
                    methods=None if methods == "*" else frozenset(methods.upper().split("|")),
                    literal=tuple(None if c else p for p, c in pairs),
                    names=tuple(p[1:-1] if c else None for p, c in pairs),
                    rest=rest,
                    rest_min=rest_min,
                    handler=handler,
                )
            )

    def match(self, method: str, parts: list[str]) -> Match[H] | None:
        for route in self._routes:
            if route.methods is not None and method.upper() not in route.methods:
                continue
            fixed = len(route.literal)
            if route.rest is None:
                if len(parts) != fixed:
                    continue
            elif len(parts) < fixed + route.rest_min:
                continue
            params: dict[str, Any] = {}
            for seg, lit, name in zip(parts, route.literal, route.names, strict=False):
                if lit is not None and (seg.lower() if self._fold else seg) != lit:
                    break
                if name is not None:
                    params[name] = seg
            else:
                if route.rest is not None:
                    params[route.rest] = parts[fixed:]
                return Match(route.handler, params)
        return None
