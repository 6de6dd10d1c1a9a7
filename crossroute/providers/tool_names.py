"""Tool names an upstream limits in length, shortened in the request and restored in the answer.

The Codex service refuses a tool whose name is longer than 64 characters (MCP tools named
``mcp__<server>__<tool>`` pass that easily). ``shorten_tools`` rewrites every such name in a
Responses request (the tools, ``tool_choice`` and the calls already in ``input``) to
``<first 55 characters>_<8 hex of its SHA-256>``: the same long name gets the same short name in every
request (so a conversation's history keeps matching its tools), and a short name never equals
another tool's name in the same request (the hash is re-drawn with a counter until it is unique).
``NameMap.restore`` puts the long names back into any JSON the upstream sends (answers, stream
events); only a ``name`` field whose value is one of this request's short names is touched.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["MAX_TOOL_NAME", "NameMap", "short_name", "shorten_tools"]

MAX_TOOL_NAME = 64
_HASH = 8


def short_name(name: str, attempt: int = 0, limit: int = MAX_TOOL_NAME) -> str:
    """The short form of ``name`` (deterministic; ``attempt`` > 0 draws another hash)."""
    seed = name if attempt == 0 else f"{name}\0{attempt}"
    digest = hashlib.sha256(seed.encode()).hexdigest()[:_HASH]
    return f"{name[: limit - _HASH - 1]}_{digest}"


class NameMap:
    """Short name -> original name for one request."""

    __slots__ = ("long_to_short", "needles", "short_to_long")

    def __init__(self) -> None:
        self.short_to_long: dict[str, str] = {}
        self.long_to_short: dict[str, str] = {}
        self.needles: tuple[bytes, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.short_to_long)

    def add(self, long: str, taken: set[str], limit: int = MAX_TOOL_NAME) -> str:
        short = self.long_to_short.get(long)
        if short is not None:
            return short
        attempt = 0
        short = short_name(long, 0, limit)
        while short in taken or short in self.short_to_long:
            attempt += 1
            short = short_name(long, attempt, limit)
        self.long_to_short[long] = short
        self.short_to_long[short] = long
        self.needles = tuple(s.encode() for s in self.short_to_long)
        return short

    def mentioned_in(self, data: bytes) -> bool:
        """Whether ``data`` may hold one of the short names (a cheap test before parsing)."""
        return any(n in data for n in self.needles)

    def restore(self, obj: Any) -> Any:
        """``obj`` with every ``name`` that is a short name of this map put back (in place)."""
        if isinstance(obj, dict):
            for key, value in obj.items():
                if isinstance(value, str):
                    if key == "name" and value in self.short_to_long:
                        obj[key] = self.short_to_long[value]
                elif isinstance(value, dict | list):
                    self.restore(value)
        elif isinstance(obj, list):
            for item in obj:
                if isinstance(item, dict | list):
                    self.restore(item)
        return obj


def _tool_lists(body: dict[str, Any]) -> list[list[Any]]:
    lists: list[list[Any]] = []
    tools = body.get("tools")
    if isinstance(tools, list):
        lists.append(tools)
        for tool in tools:  # Codex's ``namespace`` tools hold tools of their own
            if isinstance(tool, dict) and isinstance(tool.get("tools"), list):
                lists.append(tool["tools"])
    return lists


def shorten_tools(body: dict[str, Any], limit: int = MAX_TOOL_NAME) -> NameMap:
    """Shorten the over-long tool names of a Responses request body in place; the map to undo it."""
    names = NameMap()
    lists = _tool_lists(body)
    taken: set[str] = set()
    long: list[str] = []
    for tools in lists:
        for tool in tools:
            if isinstance(tool, dict) and isinstance(name := tool.get("name"), str):
                if len(name) > limit:
                    long.append(name)
                else:
                    taken.add(name)
    items = body.get("input")
    if isinstance(items, list):  # calls made earlier in the conversation name tools too
        for item in items:
            if isinstance(item, dict) and isinstance(name := item.get("name"), str) and len(name) > limit:
                long.append(name)
    if not long:
        return names
    for name in long:
        names.add(name, taken, limit)
    for tools in lists:
        for tool in tools:
            if isinstance(tool, dict) and tool.get("name") in names.long_to_short:
                tool["name"] = names.long_to_short[tool["name"]]
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("name") in names.long_to_short:
                item["name"] = names.long_to_short[item["name"]]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        if choice.get("name") in names.long_to_short:
            choice["name"] = names.long_to_short[choice["name"]]
        allowed = choice.get("tools")
        if isinstance(allowed, list):
            for tool in allowed:
                if isinstance(tool, dict) and tool.get("name") in names.long_to_short:
                    tool["name"] = names.long_to_short[tool["name"]]
    return names
