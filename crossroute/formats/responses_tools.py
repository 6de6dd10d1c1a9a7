"""Responses tools that are not plain functions (what the Codex CLI sends), carried to formats
that only know functions, and the calls restored on the way back.

- ``custom`` (freeform, e.g. ``apply_patch`` with a Lark grammar ``format``): a function with one
  string argument ``input``; a call comes back as a ``custom_tool_call`` with that ``input``.
- ``namespace`` (a group of functions): each function flattened to ``<namespace>__<name>`` (cut
  to 64 characters with a stable hash suffix when longer); a call comes back as a
  ``function_call`` with the original ``name`` and its ``namespace``.
- ``local_shell``: a function ``local_shell`` taking ``command`` (an array of strings), ``workdir``
  and ``timeout_ms``; a call comes back as a ``local_shell_call`` with an ``exec`` action.
- hosted tools (``web_search``, ``tool_search``, ``image_generation``, ``file_search``, ``mcp``,
  ...) stay raw tools of the Responses format; each upstream format maps those it has an
  equivalent for and drops the others with one warning line per request (``drop_hosted``). A
  ``web_search`` limited to cached results (``external_web_access: false``, Codex's default) has
  no equivalent: other providers' searches are live and billed per search.

``ORIGINS`` is the key under ``Request.extra`` of the map {upstream tool name -> origin}, where
an origin is ``{"kind": "custom" | "function" | "local_shell", "name": ..., "namespace": ...}``.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import orjson

from .neutral import BadRequest, Tool, ToolCall

ORIGINS = "responses_tools"
LOCAL_SHELL = "local_shell"
MAX_NAME = 64
# Input items of hosted tools: server-side history with no meaning to another upstream.
HOSTED_ITEMS = frozenset({
    "web_search_call", "tool_search_call", "tool_search_output", "image_generation_call", "file_search_call",
    "code_interpreter_call", "mcp_call", "mcp_list_tools", "mcp_approval_request", "mcp_approval_response",
    "computer_call", "computer_call_output",
})  # fmt: skip

log = logging.getLogger("crossroute")

_LOCAL_SHELL_PARAMS = {
    "type": "object",
    "properties": {
        "command": {"type": "array", "items": {"type": "string"}, "description": "The command and its arguments."},
        "workdir": {"type": "string", "description": "The working directory to run the command in."},
        "timeout_ms": {"type": "integer", "description": "The command's time limit in milliseconds."},
    },
    "required": ["command"],
}


def flat_name(namespace: str, name: str) -> str:
    flat = namespace + name if namespace.endswith("__") else f"{namespace}__{name}"
    if len(flat) <= MAX_NAME:
        return flat
    digest = hashlib.sha256(flat.encode()).hexdigest()[:12]
    return f"{flat[: MAX_NAME - 13]}_{digest}"


def _custom_params(t: dict[str, Any]) -> dict[str, Any]:
    fmt = t.get("format")
    desc = "The tool's raw input, as plain text (not JSON-encoded)."
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        desc = (f"The tool's raw input, as plain text (not JSON-encoded), following this "
                f"{fmt.get('syntax') or ''} grammar:\n{fmt['definition']}")
    return {"type": "object", "properties": {"input": {"type": "string", "description": desc}},
            "required": ["input"], "additionalProperties": False}


def _function(t: dict[str, Any], path: str, name: str | None = None) -> Tool:
    fname = t.get("name")
    if not isinstance(fname, str) or not fname:
        raise BadRequest(f"Missing required parameter: '{path}.name'", param=f"{path}.name")
    params = t.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise BadRequest(f"Invalid type for '{path}.parameters': expected an object (JSON schema)",
                         param=f"{path}.parameters")
    desc = t.get("description")
    strict = t.get("strict")
    return Tool(name=name or fname, description=desc if isinstance(desc, str) else None, parameters=params,
                strict=strict if isinstance(strict, bool) else None)


def _custom(t: dict[str, Any], path: str, origins: dict[str, dict[str, Any]], ns: str | None = None) -> Tool:
    name = t.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"Missing required parameter: '{path}.name'", param=f"{path}.name")
    desc = t.get("description")
    flat = flat_name(ns, name) if ns else name
    origins[flat] = {"kind": "custom", "name": name, "namespace": ns}
    return Tool(name=flat, description=desc if isinstance(desc, str) else None, parameters=_custom_params(t))


def tools_to_neutral(tools: list[Any], origins: dict[str, dict[str, Any]]) -> list[Tool]:
    """Responses ``tools`` -> neutral tools; fills ``origins`` for tools that need restoring."""
    out: list[Tool] = []
    for i, t in enumerate(tools):
        path = f"tools[{i}]"
        if not isinstance(t, dict):
            raise BadRequest(f"Invalid type for '{path}': expected an object", param=path)
        kind = t.get("type")
        if kind == "function":
            out.append(_function(t, path))
        elif kind == "custom":
            out.append(_custom(t, path, origins))
        elif kind == "namespace":
            ns = t.get("name")
            members = t.get("tools")
            if not isinstance(ns, str) or not ns:
                raise BadRequest(f"Missing required parameter: '{path}.name'", param=f"{path}.name")
            if not isinstance(members, list):
                raise BadRequest(f"Invalid type for '{path}.tools': expected an array", param=f"{path}.tools")
            for j, m in enumerate(members):
                mpath = f"{path}.tools[{j}]"
                mkind = m.get("type", "function") if isinstance(m, dict) else None
                if mkind == "custom":  # Codex's Responses Lite puts freeform tools in namespaces too
                    out.append(_custom(m, mpath, origins, ns))
                    continue
                if mkind != "function":
                    raise BadRequest(f"'{mpath}' must be a function or custom tool", param=mpath)
                fname = m.get("name")
                flat = flat_name(ns, fname) if isinstance(fname, str) and fname else None
                tool = _function(m, mpath, flat)
                out.append(tool)
                origins[tool.name] = {"kind": "function", "name": fname, "namespace": ns}
        elif kind == LOCAL_SHELL:
            out.append(Tool(name=LOCAL_SHELL, description="Runs a shell command on the user's machine and returns "
                            "its output.", parameters=_LOCAL_SHELL_PARAMS))
            origins[LOCAL_SHELL] = {"kind": LOCAL_SHELL, "name": LOCAL_SHELL}
        else:
            name = t.get("name") if isinstance(t.get("name"), str) else None
            out.append(Tool(name=name or str(kind or ""), raw=t, raw_format="responses"))
    return out


# ---------------------------------------------------------------- history items


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def custom_call(item: dict[str, Any], path: str) -> ToolCall:
    call_id, name = _call_id(item, path), item.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"'{path}.name' is required", param=f"{path}.name")
    ns = item.get("namespace")
    if isinstance(ns, str) and ns:
        name = flat_name(ns, name)
    inp = item.get("input")
    return ToolCall(id=call_id, name=name, arguments=dumps({"input": inp if isinstance(inp, str) else ""}))


def local_shell_call(item: dict[str, Any], path: str) -> ToolCall:
    action = item.get("action")
    action = action if isinstance(action, dict) else {}
    args: dict[str, Any] = {"command": action.get("command") if isinstance(action.get("command"), list) else []}
    if isinstance(action.get("working_directory"), str):
        args["workdir"] = action["working_directory"]
    if isinstance(action.get("timeout_ms"), int):
        args["timeout_ms"] = action["timeout_ms"]
    return ToolCall(id=_call_id(item, path), name=LOCAL_SHELL, arguments=dumps(args))


def _call_id(item: dict[str, Any], path: str) -> str:
    call_id = item.get("call_id") or item.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest(f"'{path}.call_id' is required", param=f"{path}.call_id")
    return call_id


# ---------------------------------------------------------------- calls coming back


def _args(arguments: str) -> Any:
    try:
        return orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return None


def custom_input(arguments: str) -> str:
    """The ``input`` of a custom tool call out of the function arguments the upstream produced."""
    obj = _args(arguments)
    if isinstance(obj, dict):
        inp = obj.get("input")
        if isinstance(inp, str):
            return inp
        strings = [v for v in obj.values() if isinstance(v, str)]
        if len(strings) == 1:
            return strings[0]
    if isinstance(obj, str):
        return obj
    return arguments


def call_item(origin: dict[str, Any] | None, item_id: str, call_id: str, name: str, arguments: str,
              status: str = "completed") -> dict[str, Any]:
    """The Responses output item for a call of upstream tool ``name``."""
    kind = origin.get("kind") if origin else None
    if kind == "custom":
        item = {"id": item_id, "type": "custom_tool_call", "status": status, "call_id": call_id,
                "name": origin["name"], "input": custom_input(arguments) if arguments else ""}  # type: ignore[index]
        if origin.get("namespace"):  # type: ignore[union-attr]
            item["namespace"] = origin["namespace"]  # type: ignore[index]
        return item
    if kind == LOCAL_SHELL:
        obj = _args(arguments)
        obj = obj if isinstance(obj, dict) else {}
        action: dict[str, Any] = {"type": "exec", "command": obj.get("command") if isinstance(
            obj.get("command"), list) else []}
        if isinstance(obj.get("workdir"), str):
            action["working_directory"] = obj["workdir"]
        if isinstance(obj.get("timeout_ms"), int):
            action["timeout_ms"] = obj["timeout_ms"]
        return {"id": item_id, "type": "local_shell_call", "status": status, "call_id": call_id, "action": action}
    item = {"id": item_id, "type": "function_call", "status": status, "arguments": arguments, "call_id": call_id,
            "name": origin["name"] if origin else name}
    if origin and origin.get("namespace"):
        item["namespace"] = origin["namespace"]
    return item


# ---------------------------------------------------------------- hosted tools on other upstreams


def drop_hosted(tools: list[Tool], upstream: str, mapped: dict[str, dict[str, Any]] | None = None
                ) -> list[tuple[int, Tool, dict[str, Any] | None]]:
    """(index, tool, replacement) for every raw Responses hosted tool of ``tools``: replacement is
    the upstream's equivalent from ``mapped`` (by tool type), or None when dropped. Logs one
    warning line naming the dropped ones."""
    out: list[tuple[int, Tool, dict[str, Any] | None]] = []
    dropped: list[str] = []
    for i, t in enumerate(tools):
        if t.raw_format != "responses" or t.raw is None:
            continue
        kind = t.raw.get("type")
        kind = kind if isinstance(kind, str) else ""
        # Codex's default web_search is cached-only (external_web_access false): the live,
        # separately billed searches of other providers are not that tool
        repl = (mapped or {}).get(kind) if t.raw.get("external_web_access") is not False else None
        if repl is None:
            dropped.append(repr(kind[:40]) if not kind.isidentifier() else kind)  # client text in a log line
        out.append((i, t, repl))
    if dropped:
        log.warning("tools %s dropped: %s upstreams have no equivalent", ", ".join(sorted(set(dropped))), upstream)
    return out
