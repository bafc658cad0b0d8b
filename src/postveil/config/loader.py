"""YAML loading that remembers where each value came from, and error formatting.

pydantic reports errors by location tuples such as ``("milter", "timeout")``; the
loader keeps the line of every mapping key and sequence item so that each error can
name ``file:line``, the dotted YAML path, the offending value and what was expected.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

Location = tuple[str | int, ...]


def load_yaml_with_lines(text: str, source: str) -> tuple[Any, dict[Location, int]]:
    """Parse one YAML document and return (data, {path: 1-based line}).

    Raises ``ValueError`` with the file and line for YAML syntax errors.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Location, int] = {}
        if node is not None:
            _record_lines(node, (), lines)
            data = loader.construct_document(node)
        else:
            data = None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValueError(f"{where}: invalid YAML: {problem}") from exc
    finally:
        loader.dispose()
    return data, lines


def _record_lines(node: yaml.Node, path: Location, lines: dict[Location, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            child = path + (key,)
            _record_lines(value_node, child, lines)
            # A key's own line is more useful than its value's for "unknown key" errors.
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, path + (index,), lines)


def format_validation_errors(
    exc: ValidationError, source: str, lines: dict[Location, int]
) -> list[str]:
    """Turn pydantic errors into ``file:line: path: message (got value)`` lines."""
    problems: list[tuple[int, str]] = []
    for error in exc.errors(include_url=False):
        location = tuple(
            part for part in error["loc"] if not (isinstance(part, str) and part.startswith("function-"))
        )
        dotted = _dotted(location) or "(top level)"
        line = _line_for(location, lines)
        where = f"{source}:{line}" if line else source
        message = _message_for(error)
        problems.append((line or 0, f"{where}: {dotted}: {message}"))
    return [text for _, text in sorted(problems, key=lambda item: item[0])]


def _dotted(location: Location) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _line_for(location: Location, lines: dict[Location, int]) -> int | None:
    for end in range(len(location), -1, -1):
        line = lines.get(location[:end])
        if line is not None:
            return line
    return None


def _message_for(error: dict[str, Any]) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see conf/postveil.yaml for the valid keys)"
    if kind == "missing":
        return "required key is missing"
    message = error["msg"]
    if message.startswith("Value error, "):
        # Our own validators already name the value and the expected form.
        return message.removeprefix("Value error, ")
    return f"{message} (got {value!r})"
