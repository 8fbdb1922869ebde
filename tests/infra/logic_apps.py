"""Replays a Logic Apps workflow's actions, as the templates define them, on a trigger body.

Enough of the Workflow Definition Language for the playbooks here, following Microsoft's reference
(https://learn.microsoft.com/azure/logic-apps/workflow-definition-language-functions-reference):
a JSON string that starts with ``@`` is one expression whose value keeps its type, ``@{...}``
inside a string is interpolated as text, ``@@`` is a literal ``@``; ``?['name']`` is a null-safe
property access. Actions: Compose, Query (Filter array), Select, Http (recorded, not sent) and If
(its condition in the designer's object form, every operand evaluated: no short cut hides an
error Logic Apps would raise), run in ``runAfter`` order. Anything else fails loudly rather than
being guessed at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<punct>\?\[|\?\.|[()\[\],.]))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"cannot read the expression at {text[pos:]!r}")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def wdl_string(value: Any) -> str:
    """``string()``: text as is, null as empty, anything else as compact JSON (what Logic Apps writes)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Run:
    """One workflow run: the trigger body, parameter values and what each action produced."""

    trigger_body: Any
    parameters: Mapping[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    http_requests: list[dict[str, Any]] = field(default_factory=list)
    item_stack: list[Any] = field(default_factory=list)

    # --- expressions ------------------------------------------------------------------------

    def evaluate(self, text: str) -> Any:
        tokens = _tokens(text)
        value, rest = self._expression(tokens)
        if rest:
            raise ValueError(f"unexpected {rest[0][1]!r} in {text!r}")
        return value

    def _expression(self, tokens: list[tuple[str, str]]) -> tuple[Any, list[tuple[str, str]]]:
        kind, token = tokens[0]
        rest = tokens[1:]
        if kind == "string":
            value: Any = token[1:-1].replace("''", "'")
        elif kind == "number":
            value = float(token) if "." in token else int(token)
        elif kind == "name" and token in ("true", "false", "null") and not (rest and rest[0][1] == "("):
            value = {"true": True, "false": False, "null": None}[token]
        elif kind == "name":
            if not rest or rest[0][1] != "(":
                raise ValueError(f"{token} is not a function call")
            args, rest = self._arguments(rest[1:])
            value = self._call(token, args)
        else:
            raise ValueError(f"unexpected {token!r}")
        while rest and rest[0][1] in ("[", "?[", ".", "?."):
            null_safe = rest[0][1].startswith("?")
            if rest[0][1] in ("[", "?["):
                key, rest = self._expression(rest[1:])
                if not rest or rest[0][1] != "]":
                    raise ValueError("missing ]")
                rest = rest[1:]
            else:
                key = rest[1][1]
                rest = rest[2:]
            value = _member(value, key, null_safe=null_safe)
        return value, rest

    def _arguments(self, tokens: list[tuple[str, str]]) -> tuple[list[Any], list[tuple[str, str]]]:
        args: list[Any] = []
        if tokens and tokens[0][1] == ")":
            return args, tokens[1:]
        while True:
            value, tokens = self._expression(tokens)
            args.append(value)
            if tokens and tokens[0][1] == ",":
                tokens = tokens[1:]
                continue
            if tokens and tokens[0][1] == ")":
                return args, tokens[1:]
            raise ValueError("missing ) after the arguments")

    def _call(self, name: str, args: list[Any]) -> Any:
        functions: dict[str, Callable[..., Any]] = {
            "triggerBody": lambda: self.trigger_body,
            "body": lambda action: self.outputs[action],
            "outputs": lambda action: self.outputs[action],
            "parameters": lambda key: self.parameters[key],
            "item": lambda: self.item_stack[-1],
            "coalesce": lambda *values: next((v for v in values if v is not None), None),
            "createArray": lambda *values: list(values),
            "equals": lambda a, b: a == b,
            "if": lambda condition, yes, no: yes if _boolean(condition) else no,
            "toLower": lambda text: wdl_string(text).lower(),
            "string": wdl_string,
            "replace": lambda text, old, new: wdl_string(text).replace(old, new),
            "empty": lambda value: value is None or len(value) == 0,
            "not": lambda value: not _boolean(value),
            "and": lambda *values: all([_boolean(v) for v in values]),
            "or": lambda *values: any([_boolean(v) for v in values]),
            "concat": lambda *texts: "".join(_text(t) for t in texts),
            "length": _length,
            "split": lambda text, delimiter: _text(text).split(_text(delimiter)),
            "join": lambda items, delimiter: _text(delimiter).join(wdl_string(i) for i in _array(items)),
            "substring": _substring,
            "range": lambda start, count: list(range(_integer(start), _integer(start) + _count(count))),
            "mod": lambda a, b: _integer(a) % _integer(b),
            "contains": _contains,
            "startsWith": lambda text, prefix: _text(text).lower().startswith(_text(prefix).lower()),
            "endsWith": lambda text, suffix: _text(text).lower().endswith(_text(suffix).lower()),
        }
        if name not in functions:
            raise ValueError(f"the replay does not know the function {name}()")
        return functions[name](*args)

    # --- values -----------------------------------------------------------------------------

    def value(self, template: Any) -> Any:
        """A JSON value of the definition, with its expressions evaluated."""
        if isinstance(template, dict):
            return {key: self.value(item) for key, item in template.items()}
        if isinstance(template, list):
            return [self.value(item) for item in template]
        if not isinstance(template, str):
            return template
        if template.startswith("@@"):
            return template[1:]
        if template.startswith("@") and not template.startswith("@{"):
            return self.evaluate(template[1:])
        return self._interpolate(template)

    def _interpolate(self, template: str) -> str:
        """``@{expression}`` spans replaced by their text; quotes inside an expression are skipped."""
        out: list[str] = []
        pos = 0
        while (start := template.find("@{", pos)) >= 0:
            out.append(template[pos:start])
            end, quoted = start + 2, False
            while end < len(template) and (quoted or template[end] != "}"):
                quoted ^= template[end] == "'"
                end += 1
            if end == len(template):
                raise ValueError(f"unterminated @{{ in {template!r}")
            out.append(wdl_string(self.evaluate(template[start + 2 : end])))
            pos = end + 1
        out.append(template[pos:])
        return "".join(out)

    # --- actions ----------------------------------------------------------------------------

    def run_actions(self, actions: Mapping[str, Any]) -> None:
        done: set[str] = set()
        while len(done) < len(actions):
            ready = [
                name
                for name, action in actions.items()
                if name not in done and set(action.get("runAfter") or {}) <= done
            ]
            if not ready:
                raise ValueError(f"runAfter cycle or unknown predecessor among {sorted(set(actions) - done)}")
            for name in ready:
                for predecessor, states in (actions[name].get("runAfter") or {}).items():
                    assert "Succeeded" in states, f"{name} does not run after {predecessor} succeeds"
                self.outputs[name] = self._run(actions[name])
                done.add(name)

    def _run(self, action: Mapping[str, Any]) -> Any:
        kind, inputs = action["type"], action.get("inputs")
        if kind == "Compose":
            return self.value(inputs)
        if kind == "Query":
            return [
                element for element in self.value(inputs["from"]) if self._with_item(element, inputs["where"])
            ]
        if kind == "Select":
            return [self._with_item(element, inputs["select"]) for element in self.value(inputs["from"])]
        if kind == "Http":
            request = self.value(inputs)
            self.http_requests.append(request)
            return request
        if kind == "If":
            holds = self.condition(action["expression"])
            branch = action.get("actions") if holds else (action.get("else") or {}).get("actions")
            self.run_actions(branch or {})
            return {"expression": holds}
        raise ValueError(f"the replay does not run {kind} actions")

    def condition(self, expression: Any) -> bool:
        """An If condition: an expression string, or the designer's object form
        (``{"and": [{"equals": [a, b]}, {"not": {...}}]}``)."""
        if isinstance(expression, str):
            return _boolean(self.value(expression))
        ((operator, operands),) = expression.items()
        if operator in ("and", "or"):
            values = [self.condition(operand) for operand in operands]
            return all(values) if operator == "and" else any(values)
        if operator == "not":
            return not self.condition(operands)
        comparisons: dict[str, Callable[[Any, Any], bool]] = {
            "equals": lambda a, b: bool(a == b),
            "contains": _contains,
            "startsWith": lambda a, b: _text(a).lower().startswith(_text(b).lower()),
            "endsWith": lambda a, b: _text(a).lower().endswith(_text(b).lower()),
            "greater": lambda a, b: bool(a > b),
            "less": lambda a, b: bool(a < b),
        }
        if operator not in comparisons:
            raise ValueError(f"the replay does not know the condition {operator}")
        left, right = (self.value(operand) for operand in operands)
        return comparisons[operator](left, right)

    def _with_item(self, element: Any, template: Any) -> Any:
        self.item_stack.append(element)
        try:
            return self.value(template)
        finally:
            self.item_stack.pop()


def _member(value: Any, key: Any, *, null_safe: bool) -> Any:
    if value is None:
        if null_safe:
            return None
        raise ValueError(f"property {key!r} of null")
    if isinstance(value, dict):
        if key in value:
            return value[key]
        if null_safe:
            return None
        raise ValueError(f"no property {key!r}")
    if isinstance(value, list) and isinstance(key, int):
        return value[key]
    raise ValueError(f"cannot take {key!r} of {type(value).__name__}")


# --- functions on values: as strict as Logic Apps, which fails the action on a wrong type ----------


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected a boolean, got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _array(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"expected an array, got {value!r}")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _count(value: Any) -> int:
    count = _integer(value)
    if count < 0:
        raise ValueError(f"range() count must not be negative, got {count}")
    return count


def _length(value: Any) -> int:
    if not isinstance(value, str | list):
        raise ValueError(f"length() of {value!r}")
    return len(value)


def _substring(text: Any, start: Any, length: Any = None) -> str:
    """``substring(text, startIndex[, length])``: an index past the end fails the action."""
    value, begin = _text(text), _integer(start)
    count = len(value) - begin if length is None else _integer(length)
    if begin < 0 or count < 0 or begin + count > len(value):
        raise ValueError(f"substring({value!r}, {begin}, {count}) is out of range")
    return value[begin : begin + count]


def _contains(collection: Any, value: Any) -> bool:
    """A substring of a string, an item of an array, a key of an object."""
    if isinstance(collection, str):
        return _text(value) in collection
    if isinstance(collection, list | dict):
        return value in collection
    raise ValueError(f"contains() on {collection!r}")
