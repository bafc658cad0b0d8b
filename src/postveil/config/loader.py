"""YAML loading that remembers where each value came from, and error formatting.

pydantic reports errors by location tuples such as ``("milter", "timeout")``; the
loader keeps the line of every mapping key and sequence item so that each error can
name ``file:line``, the dotted YAML path, the offending value and what was expected.
Where a common mistake explains an error (a tab, a key outside its section, an
unquoted octal mode), the message says how to fix it.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

Location = tuple[str | int, ...]

_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


@dataclass
class SourcePositions:
    """Source positions of the values of a parsed YAML document."""

    lines: dict[Location, int] = field(default_factory=dict)
    """1-based line of every mapping key and sequence item, by YAML path."""

    unquoted_numbers: dict[Location, str] = field(default_factory=dict)
    """Source text of unquoted scalars that YAML turned into numbers (``0660`` -> 432)."""


class YamlProblems(ValueError):
    """The text is not one valid YAML document; ``problems`` has one line per error."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_yaml(text: str, source: str) -> tuple[Any, SourcePositions]:
    """Parse one YAML document and return (data, positions).

    Raises :class:`YamlProblems` naming the file, line and column of a syntax error,
    or every key that appears twice in one mapping.
    """
    loader = yaml.SafeLoader(text)
    positions = SourcePositions()
    try:
        node = loader.get_single_node()
        if node is None:
            return None, positions
        duplicates: list[str] = []
        _record_positions(node, (), positions, duplicates, source)
        if duplicates:
            raise YamlProblems(duplicates)
        return loader.construct_document(node), positions
    except yaml.YAMLError as exc:
        raise YamlProblems([_describe_yaml_error(exc, text, source)]) from exc
    finally:
        loader.dispose()


def _record_positions(
    node: yaml.Node, path: Location, positions: SourcePositions, duplicates: list[str], source: str
) -> None:
    positions.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        if node.style is None and node.tag in _NUMBER_TAGS:
            positions.unquoted_numbers[path] = node.value
    elif isinstance(node, yaml.MappingNode):
        first_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            child = path + (key,)
            key_line = key_node.start_mark.line + 1
            if key in first_lines:
                what = "section" if not path else "key"
                fix = (
                    "merge the keys of both into one"
                    if isinstance(value_node, yaml.MappingNode)
                    else "keep only the one you mean"
                )
                duplicates.append(
                    f"{source}:{key_line}: {_dotted(child)}: duplicate {what}, first at line "
                    f"{first_lines[key]}; the second would silently replace the first, so {fix}"
                )
            first_lines.setdefault(key, key_line)
            _record_positions(value_node, child, positions, duplicates, source)
            # A key's own line is more useful than its value's for "unknown key" errors.
            positions.lines[child] = key_line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_positions(item, path + (index,), positions, duplicates, source)


def _describe_yaml_error(exc: yaml.YAMLError, text: str, source: str) -> str:
    """Format a PyYAML error as ``file:line: invalid YAML at column N: problem; fix``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return f"{source}: invalid YAML: {problem}"
    where = f"{source}:{mark.line + 1}: invalid YAML at column {mark.column + 1}"
    if "found another document" in problem:
        return (
            f"{where}: more than one YAML document (---); a configuration file is one "
            "document, so remove this '---' and merge what follows into the first part"
        )
    source_lines = text.splitlines()
    line_text = source_lines[mark.line] if mark.line < len(source_lines) else ""
    if "\t" in problem or "\\t" in problem or "\t" in line_text:
        return f"{where}: {problem}; YAML indentation uses spaces, not tabs"
    if "mapping values are not allowed" in problem:
        return (
            f"{where}: {problem}; check for a missing space after ':' on this or the line "
            "before, a ':' inside an unquoted value (quote the value), or wrong indentation"
        )
    if "expected <block end>" in problem:
        return (
            f"{where}: {problem}; keys at the same level must start in the same column, "
            "so check this line's indentation against the lines above"
        )
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        return f"{where}: {problem} ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    return f"{where}: {problem}"


def format_validation_errors(
    exc: ValidationError, source: str, positions: SourcePositions, model: type[BaseModel]
) -> list[str]:
    """Turn pydantic errors into ``file:line: path: message (got value)`` lines.

    ``model`` is the class that was validated; its fields give spelling suggestions
    for unknown keys.
    """
    problems: list[tuple[int, str]] = []
    for error in exc.errors(include_url=False):
        location = tuple(
            part for part in error["loc"] if not (isinstance(part, str) and part.startswith("function-"))
        )
        dotted = _dotted(location) or "(top level)"
        line = _line_for(location, positions.lines)
        where = f"{source}:{line}" if line else source
        message = _message_for(error, location, positions, model)
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


def _message_for(
    error: dict[str, Any], location: Location, positions: SourcePositions, model: type[BaseModel]
) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return "unknown key; " + _unknown_key_hint(location, model)
    if kind == "missing":
        return "required key is missing"
    if kind == "model_type" and value is None:
        return (
            "section is empty; indent its keys under it (for example two spaces before "
            "each key), or remove the line if every default is wanted"
        )
    message = error["msg"]
    if message.startswith("Value error, "):
        # Our own validators already name the value and the expected form.
        message = message.removeprefix("Value error, ")
    else:
        message = f"{message} (got {value!r})"
    raw = positions.unquoted_numbers.get(location)
    expects_text = kind == "string_type" or "quoted" in message
    if raw is not None and expects_text:
        # A list item is quoted alone, and a key's value is shown with its key.
        quoted = f'"{raw}"' if isinstance(location[-1], int) else f'{location[-1]}: "{raw}"'
        message += (
            f"; YAML read the unquoted {raw} as the number {value!r}, so write it in quotes: "
            + quoted
        )
    elif raw is not None and raw != str(value):
        message += f"; YAML read the unquoted {raw} as the number {value!r}"
    return message


def _unknown_key_hint(location: Location, model: type[BaseModel]) -> str:
    """Suggest the key the writer probably meant, or where the valid keys are listed."""
    key = str(location[-1])
    fallback = "check the spelling (conf/postveil.yaml lists every valid key with a comment)"
    parent = _model_at(model, location[:-1])
    if parent is None:
        return fallback
    close = difflib.get_close_matches(key, list(parent.model_fields), n=1, cutoff=0.75)
    if close:
        return f"did you mean '{close[0]}'?"
    # A key written at the wrong level or in the wrong section, for example
    # "timeout:" at the top level or "nameservers:" under milter.
    homes = [
        f"{name}.{key}"
        for name, section in _child_models(model).items()
        if key in section.model_fields and (name,) != location[:-1]
    ]
    if len(homes) == 1:
        return f"keys belong under their section: did you mean {homes[0]}?"
    if homes:
        return f"keys belong under their section, and this one exists as {', '.join(homes)}"
    return fallback


def _model_at(model: type[BaseModel], location: Location) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    for part in location:
        if current is None or not isinstance(part, str):
            return None
        current = _child_models(current).get(part)
    return current


def _child_models(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Fields of ``model`` whose value is itself a model (sections, nested tables)."""
    children: dict[str, type[BaseModel]] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        candidates = typing.get_args(annotation) if is_union else (annotation,)
        for candidate in candidates:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                children[name] = candidate
    return children
