"""config.yaml as YAML: every mapping and list knows its lines, and string values name environment
variables.

``${NAME}`` (also inside a longer string: ``Bearer ${TOKEN}``), ``${NAME:-default}`` when unset or
empty, ``$${`` for a literal ``${``. Keys are never expanded. An unset variable or a malformed
reference is a problem at the line where it is written (inside block scalars too), reported by
``load_yaml`` next to the data so the caller can show every problem at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

__all__ = ["Expanded", "LineDict", "LineList", "YAMLError", "load_yaml"]

YAMLError = yaml.YAMLError
Problem = tuple[int | None, str, str]


class LineDict(dict):  # type: ignore[type-arg]
    line: int = 0
    lines: dict[Any, int]


class LineList(list):  # type: ignore[type-arg]
    line: int = 0
    lines: list[int]


class Expanded(str):
    """A string value that named environment variables (``names``), already expanded."""

    names: tuple[str, ...] = ()


_ENV_REF = re.compile(r"\$\$\{|\$\{([^}]*)(\}|$)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Loader(yaml.SafeLoader):
    env: Mapping[str, str] = os.environ
    env_problems: list[Problem]

    def expand(self, node: yaml.ScalarNode, value: str) -> str:
        """``value`` with ``${NAME}`` references replaced from ``env``; problems at their line."""
        if "${" not in value:
            return value
        start = node.start_mark
        raw = start.buffer[start.index:node.end_mark.index] if start.buffer is not None else ""
        names: list[str] = []

        def line_of(ref: str) -> int:
            at = raw.find(ref)
            return start.line + 1 + (raw[:at].count("\n") if at >= 0 else 0)

        def one(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            body, closed = m.group(1), m.group(2)
            ref = "${" + body
            if not closed:
                self.env_problems.append((line_of(ref), "", f"unterminated {ref!r}: write ${{NAME}} (or $${{ for a "
                                                             "literal ${)"))
                return m.group(0)
            name, sep, default = body.partition(":-")
            if not _ENV_NAME.fullmatch(name):
                self.env_problems.append((line_of(ref), "", f"invalid environment variable name in {ref + '}'!r}"))
                return m.group(0)
            names.append(name)
            got = self.env.get(name)
            if got is None or (sep and got == ""):
                if sep:
                    return default
                self.env_problems.append((line_of(ref), "", f"environment variable {name} is not set "
                                          f"(referenced as ${{{name}}})"))
                return ""
            return got

        out = _ENV_REF.sub(one, value)
        if not names:
            return out
        expanded = Expanded(out)
        expanded.names = tuple(names)
        return expanded


def _construct_str(loader: Loader, node: yaml.ScalarNode) -> str:
    return loader.expand(node, loader.construct_scalar(node))


def _construct_mapping(loader: Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.lines = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:str":
            key = loader.construct_scalar(key_node)  # keys are names, never expanded
        else:
            key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.lines = [child.start_mark.line + 1 for child in node.value]
    return out


Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
Loader.add_constructor("tag:yaml.org,2002:str", _construct_str)


def load_yaml(text: str, env: Mapping[str, str] | None = None) -> tuple[Any, list[Problem]]:
    """The YAML document in ``text`` (mappings ``LineDict``, lists ``LineList``, strings that named
    variables ``Expanded``) and the problems of its ``${NAME}`` references. Raises ``YAMLError``."""
    loader = Loader(text)
    loader.env = os.environ if env is None else env
    loader.env_problems = []
    try:
        return loader.get_single_data(), loader.env_problems
    finally:
        loader.dispose()
