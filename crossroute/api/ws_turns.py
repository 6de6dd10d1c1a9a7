"""Turn state of one downstream Responses WebSocket: what each ``response.create`` means in full.

A client on a WebSocket may send a whole conversation, or only its new items with
``previous_response_id`` (the upstream is expected to remember the last response). The gateway
always hands ``dispatch`` the conversation in full (``TurnState.prepare``), so any upstream can
serve the turn: an HTTP upstream of any format gets the merged history, and a WebSocket upstream
trims it back to the new items itself when its connection holds the rest
(``providers/ws_upstream.py``). The rules, in order:

1. ``previous_response_id`` names a response of this session: its input and output, then the new
   items (duplicates by id, and function calls by ``call_id``, removed).
2. ``previous_response_id`` names a response this session does not know: the request goes as sent
   (the upstream decides; an unknown id is the upstream's error).
3. No ``previous_response_id`` and the items carry history (assistant messages, function or custom
   tool calls, reasoning or compaction items, or a Codex local-compaction summary): transcript
   replacement. The stored state is reset and the input is sent as given, with orphaned tool
   calls and outputs removed; never appended to stale state.
4. No ``previous_response_id``, only user or developer messages (or tool outputs), and the
   session has a last response whose pending tool calls all get their outputs here (a lone
   developer message counts as answered): a continuation, merged as in 1.
5. Otherwise the input is the conversation (first turn, or a fresh start).

``model`` is required on the first turn and inherited afterwards, as are ``instructions``. What
counts as history, a tool call's output or a duplicate is decided by ``formats/responses_turns.py``;
this module keeps the session's state.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..formats.responses_turns import (
    ItemIndex,
    answered_calls,
    as_items,
    is_history,
    only_developer,
    pending_calls,
    repair_orphans,
)

__all__ = ["HISTORY_KEPT", "TurnError", "TurnState"]

HISTORY_KEPT = 4  # responses of a session whose full context is kept (for previous_response_id)
_NOT_SENT = ("type", "stream", "background", "stream_id")


class TurnError(Exception):
    """A client message that cannot be a turn: ``message`` names the field (``param``)."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def _as_items(value: Any) -> list[Any]:
    items = as_items(value)
    if items is None:
        raise TurnError(f"'input' must be a string or an array of input items, got {type(value).__name__}", "input")
    return items


class TurnState:
    """One downstream WebSocket session's conversation as the gateway has seen it."""

    __slots__ = ("_index", "_index_rid", "_kept", "base", "history", "last_request", "last_response_id",
                 "pending_calls", "turns")

    def __init__(self) -> None:
        self.last_request: dict[str, Any] | None = None
        # response id -> the full context the upstream had for it (input + output); None: not known
        self.history: OrderedDict[str, list[Any] | None] = OrderedDict()
        self.last_response_id: str | None = None
        self.pending_calls: set[str] = set()
        self.turns = 0
        # after prepare(): (response id, n) when the input's first n items are that response's history
        self.base: tuple[str, int] | None = None
        # the lookups of one history entry (``_index_rid``'s, the one turns continue from), kept up to
        # date as the conversation grows, and the items the last prepare() added to it
        self._index: ItemIndex | None = None
        self._index_rid: str | None = None
        self._kept: list[Any] | None = None

    def reset(self) -> None:
        self.history.clear()
        self._index = self._index_rid = None
        self.last_response_id = None
        self.pending_calls = set()

    def prepare(self, message: dict[str, Any]) -> tuple[dict[str, Any], str, list[Any] | None]:
        """(the request body in full, the rule that applied, the full input or None when unknown).

        The rule: ``first``, ``continue``, ``replace``, ``passthrough`` (rule 2)."""
        body = {k: v for k, v in message.items() if k not in _NOT_SENT}
        last = self.last_request
        model = body.get("model")
        if model is None and last is not None:
            body["model"] = model = last.get("model")
        if not isinstance(model, str) or not model.strip():
            raise TurnError("missing model in response.create: 'model' is required and must be a non-empty string",
                            "model")
        if "instructions" not in body and last is not None and "instructions" in last:
            body["instructions"] = last["instructions"]
        items = _as_items(body.get("input"))
        prev = body.get("previous_response_id")
        if prev is not None and not isinstance(prev, str):
            raise TurnError("'previous_response_id' must be a string", "previous_response_id")
        self.base = None
        self._kept = None
        if prev:
            known = self.history.get(prev)
            if known is None:
                return body, "passthrough", None
            full = self._continue(prev, known, items)
            rule = "continue"
        elif last is None:
            full, rule = repair_orphans(items), "first"
        elif any(is_history(i) for i in items):
            self.reset()
            full, rule = repair_orphans(items), "replace"
        elif self.last_response_id and (known := self.history.get(self.last_response_id)) is not None and (
                self.pending_calls <= answered_calls(items) or only_developer(items)):
            full = self._continue(self.last_response_id, known, items)
            rule = "continue"
        else:
            self.reset()
            full, rule = repair_orphans(items), "replace"
        body.pop("previous_response_id", None)
        body["input"] = full
        return body, rule, full

    def _continue(self, rid: str, known: list[Any], items: list[Any]) -> list[Any]:
        """``known`` (the history of ``rid``) merged with ``items``, orphans repaired: O(len(items))
        when ``rid`` is the indexed entry (the usual next turn), else its index is built once."""
        index = self._index if self._index_rid == rid else None
        if index is None:
            index = self._index = ItemIndex(known)
            self._index_rid = rid
        kept = index.new_items(items)  # merge_items(known, items) == known + kept
        merged = [*known, *kept]
        if index.has_orphans_with(kept):
            return repair_orphans(merged)
        self.base = (rid, len(known))  # the history of ``rid`` is this input's prefix, unchanged
        self._kept = kept
        return merged

    def started(self, body: dict[str, Any]) -> None:
        """A turn with ``body`` went out (its model and instructions are inherited from now on)."""
        self.last_request = {k: body[k] for k in ("model", "instructions") if k in body}
        self.turns += 1

    def completed(self, full_input: list[Any] | None, response: dict[str, Any]) -> None:
        """The turn whose input was ``full_input`` ended with ``response`` (completed or incomplete)."""
        rid = response.get("id")
        if not isinstance(rid, str):
            return
        output = response.get("output")
        output = output if isinstance(output, list) else []
        self.history[rid] = None if full_input is None else [*full_input, *output]
        self.history.move_to_end(rid)
        index, kept, base = self._index, self._kept, self.base
        if full_input is not None and index is not None and kept is not None and base is not None \
                and base[0] == self._index_rid:
            index.add(kept)  # now the index of this response's history
            index.add(output)
            self._index_rid = rid
        else:
            self._index = self._index_rid = None  # built again when a turn continues from it
        self._kept = None
        while len(self.history) > HISTORY_KEPT:
            self.history.popitem(last=False)
        self.last_response_id = rid
        self.pending_calls = pending_calls(output)
