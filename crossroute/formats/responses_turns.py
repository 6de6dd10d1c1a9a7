"""Rules over Responses input items that decide what a conversation turn holds (pure functions: no
connection or session state; ``api/ws_turns.py`` and ``providers/ws_upstream.py`` apply them).

- ``as_items``: a request's ``input`` as a list of items (a string is one user message).
- ``is_history``: an item only a past turn can have produced (assistant messages, function or
  custom tool calls, reasoning, compaction, built-in tool calls, or a Codex local-compaction summary,
  a user message starting with ``COMPACTION_PREFIX``): input holding one is a whole transcript.
- ``call_ids`` / ``pending_calls`` / ``answered_calls``: the ``call_id``s of tool calls and of their
  outputs (``function_call`` ↔ ``function_call_output``, ``custom_tool_call`` ↔
  ``custom_tool_call_output``).
- ``repair_orphans``: the items without tool calls that have no output and outputs that have no call.
- ``merge_items``: a history, then the new items it does not hold yet (same ``id``, or a tool call
  with the same kind and ``call_id``).
- ``extends``: whether items start with everything a remembered context holds (items equal, or the
  same ``id`` and ``type``: the service may return an item with a changed ``status``), so only the
  rest needs sending.
- ``only_developer``: a follow-up made of developer or system messages only.
- ``ItemIndex``: what ``merge_items`` and ``repair_orphans`` look up in a long history (its ids, its
  tool calls and outputs, the calls still unanswered and the outputs without a call), kept as the
  history grows, so a turn that adds k items to n costs O(k), not O(n).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CALLS", "COMPACTION_PREFIX", "HISTORY_TYPES", "OUTPUTS", "ItemIndex", "answered_calls", "as_items",
           "call_ids", "extends", "is_history", "merge_items", "only_developer", "pending_calls", "repair_orphans",
           "text_of"]

# the text a Codex local-compaction summary message starts with
COMPACTION_PREFIX = "Another language model started to solve this problem"
HISTORY_TYPES = frozenset({"function_call", "custom_tool_call", "reasoning", "compaction", "compaction_summary",
                           "local_shell_call", "web_search_call", "tool_search_call"})
CALLS = {"function_call": "function_call_output", "custom_tool_call": "custom_tool_call_output"}
OUTPUTS = {v: k for k, v in CALLS.items()}


def as_items(value: Any) -> list[Any] | None:
    """``input`` as a list of items: none, a string (one user message) or a list; None for anything else."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list):
        return value
    return None


def text_of(item: dict[str, Any]) -> str:
    """The text of a message item (a string content, or its parts' ``text``)."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


def is_history(item: Any) -> bool:
    """An item only an earlier turn produces (see the module docstring)."""
    if not isinstance(item, dict):
        return False
    kind = item.get("type")
    if kind in HISTORY_TYPES:
        return True
    if kind in (None, "message"):
        role = item.get("role")
        if role == "assistant":
            return True
        if role == "user" and text_of(item).startswith(COMPACTION_PREFIX):
            return True
    return False


def call_ids(items: list[Any], kinds: dict[str, str] | frozenset[str]) -> set[str]:
    """The ``call_id``s of the items whose type is one of ``kinds``."""
    return {str(i.get("call_id")) for i in items if isinstance(i, dict) and i.get("type") in kinds and i.get("call_id")}


def pending_calls(items: list[Any]) -> set[str]:
    """The ``call_id``s of the tool calls among ``items`` (a response's output: they await outputs)."""
    return call_ids(items, CALLS)


def answered_calls(items: list[Any]) -> set[str]:
    """The ``call_id``s the tool outputs among ``items`` answer."""
    return call_ids(items, OUTPUTS)


def repair_orphans(items: list[Any]) -> list[Any]:
    """``items`` without tool calls that have no output and outputs that have no call (``items``
    itself when there are none)."""
    calls = call_ids(items, CALLS)
    outputs = call_ids(items, OUTPUTS)
    if calls == outputs:
        return items
    out = []
    for item in items:
        if isinstance(item, dict):
            kind = item.get("type")
            if kind in CALLS and str(item.get("call_id")) not in outputs:
                continue
            if kind in OUTPUTS and str(item.get("call_id")) not in calls:
                continue
        out.append(item)
    return out


def merge_items(history: list[Any], new: list[Any]) -> list[Any]:
    """``history`` then the items of ``new`` it does not already hold (by id; calls by call_id)."""
    ids = {i.get("id") for i in history if isinstance(i, dict) and i.get("id")}
    calls = {(i.get("type"), i.get("call_id")) for i in history
             if isinstance(i, dict) and i.get("type") in CALLS and i.get("call_id")}
    return [*history, *_not_held(new, ids, calls)]


def _not_held(new: list[Any], ids: set[Any], calls: set[Any]) -> list[Any]:
    """The items of ``new`` whose id is not in ``ids`` (nor earlier in ``new``) and, for calls, whose
    (type, call_id) is not in ``calls``: the one dedupe rule of merging and of incremental turns."""
    seen: set[Any] = set()
    kept = []
    for item in new:
        if isinstance(item, dict):
            iid = item.get("id")
            if iid and (iid in ids or iid in seen):
                continue
            kind = item.get("type")
            if kind in CALLS and (kind, item.get("call_id")) in calls:
                continue
            if iid:
                seen.add(iid)
        kept.append(item)
    return kept


def _same(a: Any, b: Any) -> bool:
    if a == b:
        return True
    if a.__class__ is dict and b.__class__ is dict:
        ida = a.get("id")
        return bool(ida) and ida == b.get("id") and a.get("type") == b.get("type")
    return False


def extends(memory: list[Any], items: list[Any]) -> bool:
    """Whether ``items`` starts with everything in ``memory``."""
    if len(items) < len(memory):
        return False
    return all(_same(m, i) for m, i in zip(memory, items, strict=False))


def only_developer(items: list[Any]) -> bool:
    """``items`` is not empty and holds developer or system messages only."""
    return bool(items) and all(isinstance(i, dict) and i.get("role") in ("developer", "system") for i in items)


class ItemIndex:
    """The lookups of a list of items (see ``merge_items`` and ``repair_orphans``): ``ids`` (item ids),
    ``call_keys`` ((type, call_id) of tool calls), ``calls`` and ``outputs`` (call_ids of tool calls
    and of tool outputs), ``open_calls`` (calls without an output) and ``open_outputs`` (outputs
    without a call). ``add`` keeps it up to date as items are appended."""

    __slots__ = ("call_keys", "calls", "ids", "open_calls", "open_outputs", "outputs")

    def __init__(self, items: list[Any] | None = None) -> None:
        self.ids: set[Any] = set()
        self.call_keys: set[tuple[Any, Any]] = set()
        self.calls: set[str] = set()
        self.outputs: set[str] = set()
        self.open_calls: set[str] = set()
        self.open_outputs: set[str] = set()
        if items:
            self.add(items)

    def add(self, items: list[Any]) -> None:
        for item in items:
            if item.__class__ is not dict:
                continue
            iid = item.get("id")
            if iid:
                self.ids.add(iid)
            kind = item.get("type")
            if kind in CALLS:
                cid = item.get("call_id")
                if cid:
                    self.call_keys.add((kind, cid))
                    c = str(cid)
                    self.calls.add(c)
                    if c in self.outputs:
                        self.open_outputs.discard(c)
                    else:
                        self.open_calls.add(c)
            elif kind in OUTPUTS:
                cid = item.get("call_id")
                if cid:
                    c = str(cid)
                    self.outputs.add(c)
                    if c in self.calls:
                        self.open_calls.discard(c)
                    else:
                        self.open_outputs.add(c)

    def new_items(self, new: list[Any]) -> list[Any]:
        """The items of ``new`` the indexed history does not hold (``merge_items``'s rule: history +
        these is ``merge_items(history, new)``)."""
        return _not_held(new, self.ids, self.call_keys)

    def has_orphans_with(self, new: list[Any]) -> bool:
        """Whether the indexed history followed by ``new`` holds a tool call without an output or an
        output without a call (``repair_orphans`` would change it)."""
        new_calls = call_ids(new, CALLS)
        new_outputs = call_ids(new, OUTPUTS)
        outputs, calls = self.outputs, self.calls
        if any(c not in outputs and c not in new_outputs for c in self.open_calls):
            return True
        if any(o not in calls and o not in new_calls for o in self.open_outputs):
            return True
        if any(c not in outputs and c not in new_outputs for c in new_calls):
            return True
        return any(o not in calls and o not in new_calls for o in new_outputs)
