"""Management handlers that read or change config.yaml: the whole file, ``api-keys``, each
provider key list and the scalar settings, with CLIProxyAPI's paths, bodies and answers.

Secrets are masked in every answer; a body may send a mask back and the secret it stands for is
kept (config_edit.restore). Every change is validated with ``config.parse`` before it is written,
and applied by the gateway's config watcher. The file is read, parsed and written in threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML

from .. import redaction
from ..config import PROVIDER_LISTS
from . import config_edit
from .http import BadInput, error, json_body, json_object, ok, reply, text_reply

if TYPE_CHECKING:
    from ..api.request import Request
    from ..gateway import Gateway
    from ..replies import Reply

__all__ = ["ROUTES"]

Handler = Callable[["Gateway", "Request"], Awaitable["Reply"]]


def _path(gw: Gateway) -> str:
    path = gw.settings.path
    if not path:
        raise BadInput("this gateway runs without a config file; there is nothing to edit", None, 409)
    return path


def _read_current(gw: Gateway) -> str:
    try:
        return config_edit.read(_path(gw))
    except OSError as exc:
        raise BadInput(f"cannot read the config file: {exc.strerror or exc}", None, 500) from None


def _read_masked_text(gw: Gateway) -> str:
    return config_edit.masked(_read_current(gw), gw.settings.path)


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if node is None or isinstance(node, bool | int | float | str):
        return node
    return str(node)


def _read_masked_tree(gw: Gateway) -> dict[str, Any]:
    text = _read_masked_text(gw)
    tree = YAML(typ="safe", pure=True).load(text)
    return _plain(tree) if isinstance(tree, dict) else {}


async def _masked_tree(gw: Gateway) -> dict[str, Any]:
    """The config as JSON, secrets masked (read and parsed in a thread)."""
    return await asyncio.to_thread(_read_masked_tree, gw)


def _read_masks(gw: Gateway) -> dict[str, str]:
    seen: dict[str, list[str]] = {}
    for value in config_edit.secrets_of(_read_current(gw), gw.settings.path):
        seen.setdefault(redaction.mask(value), []).append(value)
    return {m: vs[0] for m, vs in seen.items() if len(vs) == 1}


async def _masks(gw: Gateway) -> dict[str, str]:
    """mask -> secret for every secret of the current file that masks uniquely (read in a thread)."""
    return await asyncio.to_thread(_read_masks, gw)


def _unmask(obj: Any, masks: dict[str, str]) -> Any:
    if isinstance(obj, str):
        return masks.get(obj, obj)
    if isinstance(obj, list):
        return [_unmask(v, masks) for v in obj]
    if isinstance(obj, dict):
        return {k: _unmask(v, masks) for k, v in obj.items()}
    return obj


APPLY_WAIT = 5.0  # how long a change waits for the config watcher to apply it


async def applied(gw: Gateway, digest: str, wait: float = APPLY_WAIT) -> bool:
    """Has the running gateway taken in the file with this digest (hot reload), within ``wait`` s?"""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while gw.settings.digest != digest:
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _write(gw: Gateway, change: Callable[[Any], None]) -> Reply:
    """Apply ``change`` to the file (in a thread: it reads, validates, writes and fsyncs)."""
    try:
        settings, changed = await asyncio.to_thread(config_edit.edit_tree, _path(gw), change)
    except config_edit.EditError as exc:
        return reply(exc.body(), exc.status)
    return ok(changed=changed, applied=await applied(gw, settings.digest))


# ------------------------------------------------------------------ the whole file
async def get_config(gw: Gateway, req: Request) -> Reply:
    return reply(await _masked_tree(gw))


async def get_config_yaml(gw: Gateway, req: Request) -> Reply:
    return text_reply(await asyncio.to_thread(_read_masked_text, gw), "application/yaml; charset=utf-8")


async def put_config_yaml(gw: Gateway, req: Request) -> Reply:
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError:
        return error(400, "the config must be UTF-8 text", "body", message="not UTF-8")
    if not text.strip():
        return error(400, "the config is empty", "body", message="empty body")
    try:
        settings, changed = await asyncio.to_thread(config_edit.replace, _path(gw), text)
    except config_edit.EditError as exc:
        return reply(exc.body(), exc.status)
    return reply({"ok": True, "changed": ["config"] if changed else [], "applied": await applied(gw, settings.digest)})


# ------------------------------------------------------------------ api-keys (a list of strings)
def _string_items(body: Any, field: str) -> list[str]:
    items = body.get("items") if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise BadInput("body must be a JSON array of strings or {\"items\": [...]}", field)
    for i, v in enumerate(items):
        if not isinstance(v, str) or not v.strip():
            raise BadInput(f"{field}[{i}] must be a non-empty string", f"{field}[{i}]")
    return [v.strip() for v in items]


async def get_api_keys(gw: Gateway, req: Request) -> Reply:
    return reply({"api-keys": (await _masked_tree(gw)).get("api-keys") or []})


async def put_api_keys(gw: Gateway, req: Request) -> Reply:
    keys = _unmask(_string_items(json_body(req), "api-keys"), await _masks(gw))

    def change(tree: Any) -> None:
        tree["api-keys"] = keys

    return await _write(gw, change)


async def patch_api_keys(gw: Gateway, req: Request) -> Reply:
    body = _unmask(json_object(req), await _masks(gw))
    index, value, old, new = body.get("index"), body.get("value"), body.get("old"), body.get("new")
    if index is not None or value is not None:
        if not isinstance(index, int) or isinstance(index, bool):
            raise BadInput("'index' must be an integer", "index")
        if not isinstance(value, str) or not value.strip():
            raise BadInput("'value' must be a non-empty string", "value")
    elif old is not None or new is not None:
        if not isinstance(old, str) or not isinstance(new, str) or not new.strip():
            raise BadInput("'old' and 'new' must be strings ('new' non-empty)",
                           "new" if isinstance(old, str) else "old")
    else:
        raise BadInput("give {index, value} or {old, new}", "index")

    def change(tree: Any) -> None:
        keys = tree.get("api-keys")
        if keys is None:
            keys = tree["api-keys"] = []
        if index is not None:
            if not 0 <= index < len(keys):
                raise BadInput(f"'index' {index} is out of range (there are {len(keys)} keys)", "index", 404)
            keys[index] = value.strip()
            return
        for i, k in enumerate(keys):
            if k == old:
                keys[i] = new.strip()
                return
        keys.append(new.strip())

    return await _write(gw, change)


async def delete_api_keys(gw: Gateway, req: Request) -> Reply:
    index, value = req.query("index"), req.query("value")
    masks = await _masks(gw)
    if value:
        value = masks.get(value.strip(), value.strip())
    if index is None and not value:
        raise BadInput("give ?index=N or ?value=KEY", "index")
    if index is not None and not index.lstrip("-").isdigit():
        raise BadInput(f"'index' must be an integer, got {index!r}", "index")

    def change(tree: Any) -> None:
        keys = tree.get("api-keys") or []
        if index is not None:
            i = int(index)
            if not 0 <= i < len(keys):
                raise BadInput(f"'index' {i} is out of range (there are {len(keys)} keys)", "index", 404)
            del keys[i]
            return
        before = len(keys)
        keys[:] = [k for k in keys if str(k).strip() != value]
        if len(keys) == before:
            raise BadInput("no such key", "value", 404)

    return await _write(gw, change)


# ------------------------------------------------------------------ provider key lists
def _list_handlers(key: str) -> dict[str, Handler]:
    named = key == "openai-compatibility"

    async def get(gw: Gateway, req: Request) -> Reply:
        return reply({key: (await _masked_tree(gw)).get(key) or []})

    async def put(gw: Gateway, req: Request) -> Reply:
        body = json_body(req)
        items = body.get("items") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise BadInput(f"body must be a JSON array of {key} entries or {{\"items\": [...]}}", key)
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise BadInput(f"{key}[{i}] must be an object", f"{key}[{i}]")
        items = _unmask(items, await _masks(gw))

        def change(tree: Any) -> None:
            tree[key] = items

        return await _write(gw, change)

    def _find(entries: list[Any], req: Request, body: dict[str, Any]) -> int:
        index = body.get("index")
        if index is not None:
            if not isinstance(index, int) or isinstance(index, bool):
                raise BadInput("'index' must be an integer", "index")
            if not 0 <= index < len(entries):
                raise BadInput(f"'index' {index} is out of range (there are {len(entries)} entries)", "index", 404)
            return index
        if named:
            name = body.get("name")
            if not isinstance(name, str) or not name.strip():
                raise BadInput("give 'index' or 'name'", "name")
            hits = [i for i, e in enumerate(entries) if isinstance(e, dict) and str(e.get("name", "")) == name.strip()]
            what = "name"
        else:
            match = body.get("match")
            if not isinstance(match, str) or not match.strip():
                raise BadInput("give 'index' or 'match' (the entry's api-key)", "match")
            base = req.query("base-url")
            hits = [i for i, e in enumerate(entries) if isinstance(e, dict) and str(e.get("api-key", "")).strip()
                    == match.strip() and (base is None or str(e.get("base-url", "")).strip() == base.strip())]
            what = "match"
        if not hits:
            raise BadInput("item not found", what, 404)
        if len(hits) > 1:
            raise BadInput("multiple items match; index is required", what)
        return hits[0]

    async def patch(gw: Gateway, req: Request) -> Reply:
        body = _unmask(json_object(req), await _masks(gw))
        value = body.get("value")
        if not isinstance(value, dict):
            raise BadInput("'value' must be an object with the fields to change", "value")

        def change(tree: Any) -> None:
            entries = tree.get(key) or []
            i = _find(entries, req, body)
            entry = entries[i]
            for k, v in value.items():
                if v is None:
                    entry.pop(k, None)
                else:
                    entry[k] = v

        return await _write(gw, change)

    async def delete(gw: Gateway, req: Request) -> Reply:
        masks = await _masks(gw)
        body: dict[str, Any] = {}
        if (index := req.query("index")) is not None:
            if not index.lstrip("-").isdigit():
                raise BadInput(f"'index' must be an integer, got {index!r}", "index")
            body["index"] = int(index)
        elif named and req.query("name"):
            body["name"] = req.query("name")
        elif not named and req.query("api-key"):
            body["match"] = masks.get(str(req.query("api-key")).strip(), req.query("api-key"))
        else:
            raise BadInput(f"give ?{'name' if named else 'api-key'}=... or ?index=N", "name" if named else "api-key")

        def change(tree: Any) -> None:
            entries = tree.get(key) or []
            del entries[_find(entries, req, body)]

        return await _write(gw, change)

    return {"GET": get, "PUT": put, "PATCH": patch, "DELETE": delete}


# ------------------------------------------------------------------ scalar settings
# route -> (config path, JSON types accepted, answer key)
SCALARS: dict[str, tuple[tuple[str, ...], tuple[type, ...], str]] = {
    "debug": (("debug",), (bool,), "debug"),
    "request-log": (("request-log",), (bool,), "request-log"),
    "usage-statistics-enabled": (("usage-statistics-enabled",), (bool,), "usage-statistics-enabled"),
    "request-retry": (("request-retry",), (int,), "request-retry"),
    "max-retry-interval": (("max-retry-interval",), (int, float), "max-retry-interval"),
    "logs-max-total-size-mb": (("logs-max-total-size-mb",), (int, float), "logs-max-total-size-mb"),
    "error-logs-max-files": (("error-logs-max-files",), (int,), "error-logs-max-files"),
    "force-model-prefix": (("force-model-prefix",), (bool,), "force-model-prefix"),
    "proxy-url": (("proxy-url",), (str,), "proxy-url"),
    "routing/strategy": (("routing", "strategy"), (str,), "strategy"),
}


def _scalar_handlers(route: str) -> dict[str, Handler]:
    keys, types, answer = SCALARS[route]

    async def get(gw: Gateway, req: Request) -> Reply:
        node: Any = await _masked_tree(gw)
        for k in keys:
            node = node.get(k) if isinstance(node, dict) else None
        return reply({answer: node})

    async def put(gw: Gateway, req: Request) -> Reply:
        body = json_object(req)
        if "value" not in body:
            raise BadInput("body must be {\"value\": ...}", "value")
        value = body["value"]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            names = " or ".join({bool: "a boolean", int: "an integer", float: "a number", str: "a string"}[t]
                                for t in types)
            raise BadInput(f"'value' must be {names}", "value")

        def change(tree: Any) -> None:
            node = tree
            for k in keys[:-1]:
                if not isinstance(node.get(k), dict):
                    from ruamel.yaml.comments import CommentedMap

                    node[k] = CommentedMap()
                node = node[k]
            node[keys[-1]] = value

        return await _write(gw, change)

    async def delete(gw: Gateway, req: Request) -> Reply:
        def change(tree: Any) -> None:
            node = tree
            for k in keys[:-1]:
                node = node.get(k) if isinstance(node, dict) else None
                if node is None:
                    return
            node.pop(keys[-1], None)

        return await _write(gw, change)

    out: dict[str, Handler] = {"GET": get, "PUT": put, "PATCH": put}
    if route == "proxy-url":
        out["DELETE"] = delete
    return out


def _table() -> dict[tuple[str, str], Handler]:
    table: dict[tuple[str, str], Handler] = {
        ("GET", "config"): get_config,
        ("GET", "config.yaml"): get_config_yaml,
        ("PUT", "config.yaml"): put_config_yaml,
        ("GET", "api-keys"): get_api_keys,
        ("PUT", "api-keys"): put_api_keys,
        ("PATCH", "api-keys"): patch_api_keys,
        ("DELETE", "api-keys"): delete_api_keys,
    }
    for key in PROVIDER_LISTS:
        for method, handler in _list_handlers(key).items():
            table[(method, key)] = handler
    for route in SCALARS:
        for method, handler in _scalar_handlers(route).items():
            table[(method, route)] = handler
    return table


ROUTES = _table()
