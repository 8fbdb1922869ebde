"""ServiceNow encoded queries (``sysparm_query``), as the Table API documents them.

``field<operator>value`` conditions joined by ``^`` (AND), ``^OR`` (OR with the condition before),
``^NQ`` (a new query, OR-ed with the previous ones); ``ORDERBY<field>`` / ``ORDERBYDESC<field>``;
``^^`` is a literal ``^`` inside a value. Field names, operators and values are case-sensitive.
Operators: ``=``, ``!=``, ``LIKE``, ``NOT LIKE``, ``STARTSWITH``, ``ENDSWITH``, ``IN``, ``NOT IN``,
``ISEMPTY``, ``ISNOTEMPTY``, ``>``, ``>=``, ``<``, ``<=``. Fields may be dot-walked
(``requested_for.email``); a reference compares by its sys_id.

An invalid condition (unknown field, unknown operator, anything unparsable) is dropped and the rest
of the query still applies, which may select every row: ServiceNow's documented default. With
``glide.invalid_query.returns_no_rows`` set, an invalid query selects nothing (``Query.invalid``).
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable
from typing import Any

_FIELD = re.compile(r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*")
# Longest first, so NOT LIKE is not read as a field followed by garbage, ISNOTEMPTY before ISEMPTY.
_OPERATORS = ("ISNOTEMPTY", "ISEMPTY", "NOT LIKE", "STARTSWITH", "ENDSWITH", "LIKE", "NOT IN", "IN",
              "!=", ">=", "<=", "=", ">", "<")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Condition:
    path: str
    op: str
    value: str

    def holds(self, actual: str) -> bool:
        value = self.value
        match self.op:
            case "=":
                return actual == value
            case "!=":
                return actual != value
            case "LIKE" | "NOT LIKE":
                return (value in actual) == (self.op == "LIKE")
            case "STARTSWITH":
                return actual.startswith(value)
            case "ENDSWITH":
                return actual.endswith(value)
            case "IN" | "NOT IN":
                return (actual in value.split(",")) == (self.op == "IN")
            case "ISEMPTY" | "ISNOTEMPTY":
                return (actual == "") == (self.op == "ISEMPTY")
        return _compare(actual, self.op, value)


_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le
}  # fmt: skip


def _compare(actual: str, op: str, value: str) -> bool:
    """Numbers compare as numbers, anything else as text."""
    left: Any
    right: Any
    try:
        left, right = float(actual), float(value)
    except ValueError:
        left, right = actual, value
    return _ORDERING[op](left, right)


@dataclasses.dataclass
class Query:
    """NQ-groups of AND-clauses of OR-alternatives; plus ordering; ``invalid`` when a part was
    dropped."""

    groups: list[list[list[Condition]]]
    order: list[tuple[str, bool]]
    invalid: bool = False

    def matches(self, value_of: Callable[[str], str]) -> bool:
        return any(
            all(any(c.holds(value_of(c.path)) for c in clause) for clause in group) for group in self.groups
        )


def split_terms(encoded: str) -> list[str]:
    """Split on ``^``; ``^^`` stays in the term as one ``^``."""
    terms, current, i = [], [], 0
    while i < len(encoded):
        if encoded.startswith("^^", i):
            current.append("^")
            i += 2
        elif encoded[i] == "^":
            terms.append("".join(current))
            current, i = [], i + 1
        else:
            current.append(encoded[i])
            i += 1
    terms.append("".join(current))
    return [t for t in terms if t]


def parse_condition(term: str, valid_path: Callable[[str], bool]) -> Condition | None:
    field = _FIELD.match(term)
    if field is None or not valid_path(field.group()):
        return None
    rest = term[field.end() :]
    op = next((o for o in _OPERATORS if rest.startswith(o)), None)
    if op is None:
        return None
    value = rest[len(op) :]
    if op in ("ISEMPTY", "ISNOTEMPTY") and value:
        return None
    return Condition(field.group(), op, value)


def parse_query(encoded: str, valid_path: Callable[[str], bool]) -> Query:
    query = Query(groups=[[]], order=[])
    for term in split_terms(encoded):
        if term == "EQ":
            continue
        ordering = re.fullmatch(r"ORDERBY(DESC)?(.+)", term)
        if ordering:
            if valid_path(ordering.group(2)):
                query.order.append((ordering.group(2), bool(ordering.group(1))))
            else:
                query.invalid = True
            continue
        alternative = term.startswith("OR")
        if term.startswith("NQ"):
            query.groups.append([])
        condition = parse_condition(term[2:] if alternative or term.startswith("NQ") else term, valid_path)
        if condition is None:
            query.invalid = True
        elif alternative and query.groups[-1]:
            query.groups[-1][-1].append(condition)
        else:
            query.groups[-1].append([condition])
    return query
