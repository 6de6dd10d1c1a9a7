"""config.yaml: loading with line numbers, validation, and the typed settings the gateway runs on.

Key names follow CLIProxyAPI so existing configs load. Unknown keys, and CLIProxyAPI keys that
are accepted but not implemented yet, are warned about, never fatal; invalid values stop start-up
with ``<file>:<line>: <field>: <problem>``.

Any string value may name environment variables: ``${NAME}`` (also inside a longer string, as in
``Bearer ${TOKEN}``), ``${NAME:-default}`` when unset or empty, ``$${`` for a literal ``${``. An unset
variable is an error at its own line. ``secret_values`` lists every configured secret, for
``redaction.set_secrets``; problem messages mask them by value.

YAML loading (lines, ``${NAME}``) is in ``config_yaml``, the key tables in ``config_keys``, what
counts as a secret in ``config_secrets``; this module keeps the settings and their validators, one
checker pass over the whole file so every problem is reported at once. It is longer than most
modules (about 800 lines) because every key CLIProxyAPI configs use is validated here, next to the
others, by the same small helpers; splitting the validators by topic would spread one pass over
several files.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import redaction
from .config_keys import (
    ENTRY_KEYS,
    MOCK_KEYS,
    NOT_IMPLEMENTED_ENTRY,
    NOT_IMPLEMENTED_KEY_ENTRY,
    NOT_IMPLEMENTED_MODEL,
    NOT_IMPLEMENTED_TOP,
    NOT_YET,
    OAUTH_ALIAS_KEYS,
    OAUTH_CHANNELS,
    PROVIDER_LISTS,
    TOP_KEYS,
)
from .config_secrets import raw_secrets, secret_values
from .config_yaml import Expanded, LineDict, LineList, YAMLError, load_yaml

__all__ = [
    "DEFAULT_AUTH_DIR", "DEFAULT_BODY_LIMIT_MB", "DEFAULT_PORT", "OAUTH_CHANNELS", "PROVIDER_LISTS", "ConfigError",
    "ModelMap", "OAuthAlias", "ProviderEntry", "Routing",
    "Settings", "check_exposure", "find_config", "is_loopback", "load", "parse", "parse_duration", "secret_values",
]

DEFAULT_PORT = 8317
DEFAULT_BODY_LIMIT_MB = 32
# where account files live (CLIProxyAPI: ~/.cli-proxy-api); ``Settings.auth_dir`` holds it ``~``-expanded
DEFAULT_AUTH_DIR = "~/.crossroute"


class ConfigError(Exception):
    """Every problem of one config file. ``secrets``: the configured secrets found in it, masked by
    value in every message (a problem that quotes a value never shows a key)."""

    def __init__(self, path: str, problems: list[tuple[int | None, str, str]],
                 secrets: Iterable[str] = ()) -> None:
        self.path = path
        self.secrets = [v for v in secrets if v]
        self.problems = [(line, fld, redaction.scrub_with(msg, self.secrets)) for line, fld, msg in problems]
        super().__init__(self.render())

    def render(self) -> str:
        out = []
        for line, fld, msg in self.problems:
            where = f"{self.path}:{line}" if line else self.path
            out.append(f"{where}: {fld}: {msg}" if fld else f"{where}: {msg}")
        return "\n".join(out)


# ---------------------------------------------------------------- settings


@dataclass(slots=True)
class ModelMap:
    name: str  # upstream model name
    alias: str | None = None  # what clients ask for


@dataclass(slots=True)
class ProviderEntry:
    """One upstream credential as configured (one API key of one provider list entry)."""

    kind: str  # "openai" (openai-compatibility), "claude", "gemini", "codex", "mock"
    provider: str  # provider key: "openai-compatibility:<name>", "claude", "gemini", "codex"
    name: str
    api_key: str
    base_url: str
    proxy_url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    models: list[ModelMap] = field(default_factory=list)
    prefix: str | None = None
    priority: int = 0
    weight: int = 1
    disabled: bool = False
    excluded_models: list[str] = field(default_factory=list)
    responses_native: bool = False
    disable_cooling: bool | None = None
    line: int = 0
    websockets: bool = False  # reach this Responses upstream over WebSocket (providers/ws_upstream.py)
    cred_id: str | None = None  # an explicit id (accounts: "auth:<file name>"); else derived below
    # what providers derive from this entry once (URLs, fixed headers); a reload makes new entries
    derived: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def id(self) -> str:
        """Stable id: provider, base URL and a hash of the key (never the key itself)."""
        if self.cred_id:
            return self.cred_id
        digest = hashlib.sha256(f"{self.base_url}\0{self.api_key}".encode()).hexdigest()[:12]
        return f"{self.provider}#{digest}"


@dataclass(slots=True)
class OAuthAlias:
    """One ``oauth-model-alias.<channel>`` item: clients ask for ``alias``, the upstream gets ``name``;
    with ``fork`` the upstream name stays listed too (else the alias replaces it)."""

    name: str
    alias: str
    fork: bool = False


@dataclass(slots=True)
class Routing:
    strategy: str = "round-robin"
    session_affinity: bool = False
    session_affinity_ttl: float = 3600.0
    quota_aware: bool = False  # new sessions go to the account with the most quota headroom


@dataclass(slots=True)
class RemoteManagement:
    """``remote-management``: the management API and panel (off without a key or MANAGEMENT_PASSWORD)."""

    secret_key: str = ""  # as in the file: a bcrypt/sha hash, or a plain key the API hashes and writes back
    allow_remote: bool = False
    disable_control_panel: bool = False
    line: int = 0


@dataclass(slots=True)
class Settings:
    path: str = ""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    auth_dir: str = field(default_factory=lambda: os.path.expanduser(DEFAULT_AUTH_DIR))  # ``~`` expanded
    api_keys: list[str] = field(default_factory=list)
    debug: bool = False
    proxy_url: str | None = None
    request_retry: int = 0
    max_retry_interval: float = 30.0
    allow_unauthenticated: bool = False
    allowed_origins: list[str] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)
    body_limit: int = DEFAULT_BODY_LIMIT_MB * 1024 * 1024
    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    default_max_tokens: int | None = None
    force_model_prefix: bool = False
    disable_cooling: bool = False
    transient_cooldown: float = 60.0
    passthrough_headers: bool = False
    routing: Routing = field(default_factory=Routing)
    redis_url: str | None = None
    request_log: bool = False
    # lifecycle and abuse limits (issue 8)
    idle_timeout: float = 75.0  # idle keep-alive client connections close after this
    body_timeout: float = 60.0  # a request body not fully received by then gets 408
    max_connections: int = 2048  # open client connections; past it new ones are refused cleanly
    shutdown_timeout: float = 30.0  # SIGTERM drains this long, then ends what is left
    max_session_bindings: int = 100_000  # in-process session bindings (LRU)
    max_upstream_body: int = 64 * 1024 * 1024  # a larger upstream answer is refused with 502
    access_log: bool = True  # one INFO line per request
    # observability (issue 11)
    usage_statistics_enabled: bool = False
    usage_database_url: str | None = None  # postgresql://… ; else SQLite under data_dir
    data_dir: str = "~/.crossroute/data"
    logs_dir: str = "~/.crossroute/logs"
    request_log_max_body: int = 1024 * 1024  # bytes of each body kept in a request log
    error_logs_max_files: int = 10
    logs_max_total_size_mb: float = 0.0  # 0: no cap
    remote_management: RemoteManagement = field(default_factory=RemoteManagement)
    # the Responses API over WebSocket (issue 10): pooled upstream connections
    ws_idle_ttl: float = 300.0
    ws_max_age: float = 55 * 60.0  # below the service's 60-minute connection limit
    providers: list[ProviderEntry] = field(default_factory=list)
    # per OAuth channel (account provider: claude, codex, kimi, antigravity, vertex, xai)
    oauth_model_alias: dict[str, list[OAuthAlias]] = field(default_factory=dict)
    oauth_excluded_models: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    digest: str = ""
    # secrets found anywhere in the file, also under keys crossroute does not use (see secret_values)
    raw_secrets: list[str] = field(default_factory=list, repr=False)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_DEFAULT_BASE = {
    "claude": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "codex": "https://api.openai.com/v1",
    "vertex": "https://aiplatform.googleapis.com",
    "xai": "https://api.x.ai/v1",
}
# lists whose upstream speaks the Responses API, so ``websockets: true`` can apply
_WEBSOCKET_KINDS = ("openai", "codex", "xai")


class _Checker:
    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[tuple[int | None, str, str]] = []
        self.warnings: list[str] = []

    def fail(self, line: int | None, fld: str, msg: str) -> None:
        self.problems.append((line, fld, msg))

    def warn(self, line: int | None, fld: str, msg: str) -> None:
        self.warnings.append(f"{self.path}:{line}: {fld}: {msg}" if line else f"{self.path}: {fld}: {msg}")


def _line(container: Any, key: Any) -> int | None:
    if isinstance(container, LineDict):
        return container.lines.get(key, container.line)
    if isinstance(container, LineList) and isinstance(key, int) and key < len(container.lines):
        return container.lines[key]
    return None


def _get(c: _Checker, d: dict[str, Any], key: str, fld: str, kind: type | tuple[type, ...], default: Any) -> Any:
    if key not in d or d[key] is None:
        return default
    value = d[key]
    if isinstance(value, Expanded) and kind in (int, float, bool):
        value = _typed(value, kind)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        kinds = (kind,) if isinstance(kind, type) else kind
        names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        got = _TYPE_NAMES.get(type(value), type(value).__name__)
        env = f" (from ${{{value.names[0]}}})" if isinstance(value, Expanded) and value.names else ""
        c.fail(_line(d, key), fld, f"must be {_article(names)} {names}, got {got} {str(value)!r}{env}")
        return default
    return value


def _typed(value: Expanded, kind: type) -> Any:
    """A number or boolean that came from the environment (``port: ${PORT}``); unchanged if not one."""
    text = value.strip()
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        return value
    if kind is bool and text.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        return text.lower() in ("true", "yes", "on", "1")
    return value


_TYPE_NAMES = {int: "integer", str: "string", bool: "boolean", float: "number", list: "list", dict: "mapping",
               LineDict: "mapping", LineList: "list", Expanded: "string"}


def _article(name: str) -> str:
    return "an" if name[:1] in "aeiou" else "a"


def _str_list(c: _Checker, d: dict[str, Any], key: str, fld: str) -> list[str]:
    value = d.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        c.fail(_line(d, key), fld, "must be a list of strings")
        return []
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str | int) or isinstance(item, bool):
            c.fail(_line(value, i) or _line(d, key), f"{fld}[{i}]", "must be a string")
            continue
        item = str(item).strip()
        if item and item not in out:
            out.append(item)
    return out


def parse_duration(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    return None


def _url(c: _Checker, d: dict[str, Any], key: str, fld: str, *, schemes: tuple[str, ...]) -> str | None:
    value = d.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        c.fail(_line(d, key), fld, "must be a URL string")
        return None
    value = value.strip()
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError as exc:
        c.fail(_line(d, key), fld, f"malformed URL {value!r}: {exc}")
        return None
    if parts.scheme not in schemes or not parts.hostname:
        c.fail(_line(d, key), fld, f"malformed URL {value!r}: expected {'/'.join(schemes)}://host[:port][/path]")
        return None
    return value.rstrip("/")


def _proxy_url(c: _Checker, d: dict[str, Any], fld: str) -> str | None:
    """A proxy URL as CLIProxyAPI accepts it: ``http://``, ``https://``, ``socks5://`` (names
    resolved here), ``socks5h://`` (names resolved by the proxy), ``socks4://`` or
    ``socks4a://``, with optional ``user:password@``; or "direct"/"none" (bypass the global
    proxy)."""
    value = d.get("proxy-url")
    if isinstance(value, str) and value.strip().lower() in ("direct", "none"):
        return "direct"
    return _url(c, d, "proxy-url", fld, schemes=("http", "https", "socks5", "socks5h", "socks4", "socks4a"))


def _headers(c: _Checker, d: dict[str, Any], fld: str) -> dict[str, str]:
    value = d.get("headers")
    if value is None:
        return {}
    if not isinstance(value, dict):
        c.fail(_line(d, "headers"), f"{fld}.headers", "must be a mapping of header name to value")
        return {}
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str | int | float) or isinstance(v, bool):
            c.fail(_line(value, k), f"{fld}.headers.{k}", "must be a string")
            continue
        out[k] = str(v)
    return out


def _models(c: _Checker, d: dict[str, Any], fld: str) -> list[ModelMap]:
    value = d.get("models")
    if value is None:
        return []
    if not isinstance(value, list):
        c.fail(_line(d, "models"), f"{fld}.models", "must be a list of {name, alias}")
        return []
    out = []
    for i, item in enumerate(value):
        where = f"{fld}.models[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            c.fail(_line(value, i), where, "must be a mapping with a name")
            continue
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            c.fail(_line(value, i), f"{where}.name", "is required (the upstream model name)")
            continue
        alias = item.get("alias")
        if alias is not None and (not isinstance(alias, str) or not alias.strip()):
            c.fail(_line(item, "alias"), f"{where}.alias", "must be a non-empty string")
            alias = None
        for key in item:
            if key in NOT_IMPLEMENTED_MODEL:
                c.warn(_line(item, key), f"{where}.{key}", f"{NOT_YET} ({NOT_IMPLEMENTED_MODEL[key]})")
            elif key not in ("name", "alias"):
                c.warn(_line(item, key), f"{where}.{key}", "unknown key, ignored")
        out.append(ModelMap(name=name.strip(), alias=alias.strip() if isinstance(alias, str) else None))
    return out


def _entries(c: _Checker, raw: dict[str, Any], list_key: str, kind: str) -> list[ProviderEntry]:
    value = raw.get(list_key)
    if value is None:
        return []
    if not isinstance(value, list):
        c.fail(_line(raw, list_key), list_key, "must be a list")
        return []
    out: list[ProviderEntry] = []
    for i, item in enumerate(value):
        fld = f"{list_key}[{i}]"
        line = _line(value, i)
        if isinstance(item, str) and kind != "openai":
            item = {"api-key": item}
        if not isinstance(item, dict):
            c.fail(line, fld, "must be a mapping")
            continue
        for key in item:
            if key in NOT_IMPLEMENTED_ENTRY:
                c.warn(_line(item, key), f"{fld}.{key}", f"{NOT_YET} ({NOT_IMPLEMENTED_ENTRY[key]})")
            elif key not in ENTRY_KEYS:
                c.warn(_line(item, key), f"{fld}.{key}", "unknown key, ignored")
        name = item.get("name")
        if kind == "openai":
            if not isinstance(name, str) or not name.strip():
                c.fail(line, f"{fld}.name", "is required (names the upstream in errors and /v1/models)")
                continue
            name = name.strip()
        else:
            name = str(name) if isinstance(name, str) else kind
        problems_before = len(c.problems)
        base = _url(c, item, "base-url", f"{fld}.base-url", schemes=("http", "https"))
        if base is None:
            if kind == "openai" and not item.get("base-url"):
                c.fail(line, f"{fld}.base-url", "is required")
            base = _DEFAULT_BASE.get(kind, "")
        proxy = _proxy_url(c, item, f"{fld}.proxy-url")
        prefix = _get(c, item, "prefix", f"{fld}.prefix", str, None)
        prefix = prefix.strip().strip("/") or None if prefix else None
        common = {
            "kind": kind,
            "provider": f"openai-compatibility:{name}" if kind == "openai" else kind,
            "name": name,
            "base_url": base,
            "headers": _headers(c, item, fld),
            "models": _models(c, item, fld),
            "prefix": prefix,
            "priority": _get(c, item, "priority", f"{fld}.priority", int, 0),
            "weight": _get(c, item, "weight", f"{fld}.weight", int, 1),
            "disabled": _get(c, item, "disabled", f"{fld}.disabled", bool, False),
            "excluded_models": _str_list(c, item, "excluded-models", f"{fld}.excluded-models"),
            "responses_native": _get(c, item, "responses", f"{fld}.responses", bool, False),
            "disable_cooling": _get(c, item, "disable-cooling", f"{fld}.disable-cooling", bool, None),
            "websockets": _get(c, item, "websockets", f"{fld}.websockets", bool, False),
            "line": line or 0,
        }
        if common["websockets"] and kind not in _WEBSOCKET_KINDS:
            c.warn(_line(item, "websockets"), f"{fld}.websockets",
                   "only openai-compatibility, codex-api-key and xai-api-key reach upstreams over WebSocket; ignored")
            common["websockets"] = False
        if kind == "openai" and not common["models"]:
            c.warn(line, f"{fld}.models", "no models listed: this upstream serves no model until you list some")
        keys: list[tuple[str, str | None]] = []
        if kind == "openai":
            entries = item.get("api-key-entries")
            if entries is None:
                keys = [(str(item.get("api-key") or ""), proxy)]
            elif not isinstance(entries, list):
                c.fail(_line(item, "api-key-entries"), f"{fld}.api-key-entries", "must be a list")
            else:
                for j, e in enumerate(entries):
                    efld = f"{fld}.api-key-entries[{j}]"
                    if isinstance(e, str):
                        e = {"api-key": e}
                    if not isinstance(e, dict):
                        c.fail(_line(entries, j), efld, "must be a mapping with api-key")
                        continue
                    key = e.get("api-key")
                    if not isinstance(key, str):
                        c.fail(_line(entries, j), f"{efld}.api-key", "is required and must be a string")
                        continue
                    for ekey in e:
                        if ekey in NOT_IMPLEMENTED_KEY_ENTRY:
                            c.warn(_line(e, ekey), f"{efld}.{ekey}", f"{NOT_YET} ({NOT_IMPLEMENTED_KEY_ENTRY[ekey]})")
                        elif ekey not in ("api-key", "proxy-url"):
                            c.warn(_line(e, ekey), f"{efld}.{ekey}", "unknown key, ignored")
                    eproxy = _proxy_url(c, e, f"{efld}.proxy-url")
                    keys.append((key.strip(), eproxy or proxy))
        else:
            key = item.get("api-key")
            if not isinstance(key, str) or not key.strip():
                c.fail(line, f"{fld}.api-key", "is required")
                continue
            keys = [(key.strip(), proxy)]
        if len(c.problems) > problems_before:
            continue  # reported; the whole config is rejected anyway
        for key, kproxy in keys:
            out.append(ProviderEntry(api_key=key, proxy_url=kproxy, **common))
    return out


def _mock_entries(c: _Checker, raw: dict[str, Any]) -> list[ProviderEntry]:
    """``mock:``: built-in upstreams that answer every request at once with canned text, no
    network and no key (a first run, client integration tests)."""
    value = raw.get("mock")
    if value is None:
        return []
    if not isinstance(value, list):
        c.fail(_line(raw, "mock"), "mock", "must be a list of {name, models}")
        return []
    out: list[ProviderEntry] = []
    names: set[str] = set()
    for i, item in enumerate(value):
        fld = f"mock[{i}]"
        line = _line(value, i)
        if not isinstance(item, dict):
            c.fail(line, fld, "must be a mapping with name and models")
            continue
        for key in item:
            if key not in MOCK_KEYS:
                c.warn(_line(item, key), f"{fld}.{key}", "unknown key, ignored")
        name = item.get("name", "mock")
        if not isinstance(name, str) or not name.strip():
            c.fail(_line(item, "name"), f"{fld}.name", "must be a non-empty string")
            continue
        name = name.strip()
        if name in names:
            c.fail(_line(item, "name"), f"{fld}.name", f"{name!r} is already used by another mock entry")
            continue
        names.add(name)
        models = _models(c, item, fld)
        if not models:
            c.warn(line, f"{fld}.models", "no models listed: this mock serves no model until you list some")
        prefix = _get(c, item, "prefix", f"{fld}.prefix", str, None)
        out.append(ProviderEntry(
            kind="mock", provider=f"mock:{name}", name=name, api_key="", base_url=f"mock://{name}",
            models=models, prefix=prefix.strip().strip("/") or None if prefix else None,
            priority=_get(c, item, "priority", f"{fld}.priority", int, 0),
            weight=_get(c, item, "weight", f"{fld}.weight", int, 1),
            disabled=_get(c, item, "disabled", f"{fld}.disabled", bool, False),
            excluded_models=_str_list(c, item, "excluded-models", f"{fld}.excluded-models"),
            line=line or 0,
        ))
    return out


def parse(text: str, path: str = "config.yaml", env: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate config text (``${NAME}`` from ``env``, default ``os.environ``). Raises
    ConfigError listing every problem, with every configured secret masked."""
    c = _Checker(path)
    try:
        raw, env_problems = load_yaml(text, env)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, [(line, "", f"YAML syntax error: {problem}")]) from None
    if raw is None:  # an empty file: every default
        raw = LineDict()
        raw.lines = {}
    if not isinstance(raw, dict):
        raise ConfigError(path, [(1, "", "the top level must be a mapping of settings")])
    secrets = raw_secrets(raw)
    if env_problems:
        raise ConfigError(path, env_problems, secrets)
    s = Settings(path=path)
    for key in raw:
        if key in NOT_IMPLEMENTED_TOP:
            c.warn(_line(raw, key), str(key), f"{NOT_YET} ({NOT_IMPLEMENTED_TOP[key]})")
        elif key not in TOP_KEYS:
            c.warn(_line(raw, key), str(key), "unknown key, ignored")

    host = _get(c, raw, "host", "host", str, "127.0.0.1")
    s.host = host.strip() or "0.0.0.0"  # CLIProxyAPI: "" means all interfaces
    port = _get(c, raw, "port", "port", int, DEFAULT_PORT)
    if not 1 <= port <= 65535:
        c.fail(_line(raw, "port"), "port", f"must be between 1 and 65535, got {port}")
    s.port = port
    auth_dir = _get(c, raw, "auth-dir", "auth-dir", str, DEFAULT_AUTH_DIR)
    if not auth_dir.strip():
        c.fail(_line(raw, "auth-dir"), "auth-dir", "must not be empty")
        auth_dir = DEFAULT_AUTH_DIR
    s.auth_dir = os.path.expanduser(auth_dir.strip())
    s.api_keys = _str_list(c, raw, "api-keys", "api-keys")
    s.debug = _get(c, raw, "debug", "debug", bool, False)
    s.proxy_url = _proxy_url(c, raw, "proxy-url")
    s.request_retry = _get(c, raw, "request-retry", "request-retry", int, 0)
    if s.request_retry < 0:
        c.fail(_line(raw, "request-retry"), "request-retry", "must be 0 or more")
    s.max_retry_interval = _get(c, raw, "max-retry-interval", "max-retry-interval", float, 30.0)
    s.allow_unauthenticated = _get(c, raw, "allow-unauthenticated", "allow-unauthenticated", bool, False)
    s.allowed_origins = [o.rstrip("/") for o in _str_list(c, raw, "allowed-origins", "allowed-origins")]
    s.allowed_hosts = [h.lower() for h in _str_list(c, raw, "allowed-hosts", "allowed-hosts")]
    limit = _get(c, raw, "body-limit-mb", "body-limit-mb", float, float(DEFAULT_BODY_LIMIT_MB))
    if limit <= 0:
        c.fail(_line(raw, "body-limit-mb"), "body-limit-mb", "must be greater than 0")
    s.body_limit = int(limit * 1024 * 1024)
    for key, attr in (("connect-timeout-seconds", "connect_timeout"), ("read-timeout-seconds", "read_timeout")):
        value = _get(c, raw, key, key, float, getattr(s, attr))
        if value <= 0:
            c.fail(_line(raw, key), key, "must be greater than 0")
        setattr(s, attr, value)
    dmt = _get(c, raw, "default-max-tokens", "default-max-tokens", int, None)
    if dmt is not None and dmt <= 0:
        c.fail(_line(raw, "default-max-tokens"), "default-max-tokens", "must be greater than 0")
    s.default_max_tokens = dmt
    s.force_model_prefix = _get(c, raw, "force-model-prefix", "force-model-prefix", bool, False)
    s.disable_cooling = _get(c, raw, "disable-cooling", "disable-cooling", bool, False)
    tc = _get(c, raw, "transient-error-cooldown-seconds", "transient-error-cooldown-seconds", float, 0.0)
    s.transient_cooldown = 60.0 if tc == 0 else (-1.0 if tc < 0 else tc)
    s.passthrough_headers = _get(c, raw, "passthrough-headers", "passthrough-headers", bool, False)
    s.request_log = _get(c, raw, "request-log", "request-log", bool, False)
    for key, attr in (("idle-timeout-seconds", "idle_timeout"), ("body-timeout-seconds", "body_timeout"),
                      ("shutdown-timeout-seconds", "shutdown_timeout")):
        value = _get(c, raw, key, key, float, getattr(s, attr))
        if value <= 0:
            c.fail(_line(raw, key), key, "must be greater than 0")
        setattr(s, attr, value)
    for key, attr in (("max-connections", "max_connections"), ("max-session-bindings", "max_session_bindings")):
        value = _get(c, raw, key, key, int, getattr(s, attr))
        if value <= 0:
            c.fail(_line(raw, key), key, "must be greater than 0")
        setattr(s, attr, value)
    up_limit = _get(c, raw, "max-upstream-body-mb", "max-upstream-body-mb", float, 64.0)
    if up_limit <= 0:
        c.fail(_line(raw, "max-upstream-body-mb"), "max-upstream-body-mb", "must be greater than 0")
    s.max_upstream_body = int(up_limit * 1024 * 1024)
    s.access_log = _get(c, raw, "access-log", "access-log", bool, True)
    _observability(c, raw, s)

    routing = raw.get("routing") or {}
    if not isinstance(routing, dict):
        c.fail(_line(raw, "routing"), "routing", "must be a mapping")
        routing = {}
    strategy = _get(c, routing, "strategy", "routing.strategy", str, "round-robin")
    if strategy not in ("round-robin", "fill-first", "weighted-round-robin"):
        c.fail(_line(routing, "strategy"), "routing.strategy",
               f"must be round-robin, fill-first or weighted-round-robin, got {strategy!r}")
    affinity = _get(c, routing, "session-affinity", "routing.session-affinity", bool, None)
    if "claude-code-session-affinity" in raw:
        c.warn(_line(raw, "claude-code-session-affinity"), "claude-code-session-affinity",
               "deprecated: use routing.session-affinity")
        legacy = _get(c, raw, "claude-code-session-affinity", "claude-code-session-affinity", bool, False)
        if affinity is None:
            affinity = legacy
    ttl_raw = routing.get("session-affinity-ttl", "1h")
    ttl = parse_duration(ttl_raw)
    if ttl is None or ttl <= 0:
        c.fail(_line(routing, "session-affinity-ttl"), "routing.session-affinity-ttl",
               f"must be a duration like 30m or 1h, got {ttl_raw!r}")
        ttl = 3600.0
    quota_aware = _get(c, routing, "quota-aware", "routing.quota-aware", bool, False)
    for key in routing:
        if key not in ("strategy", "session-affinity", "session-affinity-ttl", "quota-aware"):
            c.warn(_line(routing, key), f"routing.{key}", "unknown key, ignored")
    s.routing = Routing(strategy=strategy, session_affinity=bool(affinity), session_affinity_ttl=ttl,
                        quota_aware=quota_aware)

    state = raw.get("state") or {}
    if not isinstance(state, dict):
        c.fail(_line(raw, "state"), "state", "must be a mapping")
        state = {}
    s.redis_url = _url(c, state, "redis-url", "state.redis-url", schemes=("redis", "rediss", "unix"))
    for key in state:
        if key != "redis-url":
            c.warn(_line(state, key), f"state.{key}", "unknown key, ignored")

    kinds = {"openai-compatibility": "openai", "claude-api-key": "claude", "gemini-api-key": "gemini",
             "codex-api-key": "codex", "vertex-api-key": "vertex", "xai-api-key": "xai"}
    for list_key, kind in kinds.items():
        s.providers.extend(_entries(c, raw, list_key, kind))
    s.providers.extend(_mock_entries(c, raw))
    s.oauth_model_alias = _oauth_aliases(c, raw)
    s.oauth_excluded_models = _oauth_excluded(c, raw)

    if c.problems:
        raise ConfigError(path, c.problems, secrets)
    s.warnings = [redaction.scrub_with(w, secrets) for w in c.warnings]
    s.raw_secrets = secrets
    s.digest = hashlib.sha256(text.encode()).hexdigest()
    return s


def _channel_map(c: _Checker, raw: dict[str, Any], key: str) -> dict[str, Any]:
    """``<key>.<channel>``: a mapping keyed by OAuth channel (unknown channels are warned about)."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        c.fail(_line(raw, key), key, f"must be a mapping of channel ({', '.join(OAUTH_CHANNELS)}) to a list")
        return {}
    out: dict[str, Any] = {}
    for channel, items in value.items():
        name = str(channel).strip().lower()
        if name not in OAUTH_CHANNELS:
            c.warn(_line(value, channel), f"{key}.{channel}",
                   f"unknown channel, ignored (channels: {', '.join(OAUTH_CHANNELS)})")
            continue
        if items is None:
            continue
        if not isinstance(items, list):
            c.fail(_line(value, channel), f"{key}.{channel}", "must be a list")
            continue
        out[name] = items
    return out


def _oauth_aliases(c: _Checker, raw: dict[str, Any]) -> dict[str, list[OAuthAlias]]:
    """``oauth-model-alias.<channel>: [{name, alias, fork}]`` (the accounts' model aliases)."""
    out: dict[str, list[OAuthAlias]] = {}
    for channel, items in _channel_map(c, raw, "oauth-model-alias").items():
        for i, item in enumerate(items):
            fld = f"oauth-model-alias.{channel}[{i}]"
            if not isinstance(item, dict):
                c.fail(_line(items, i), fld, "must be a mapping with name and alias")
                continue
            name, alias = item.get("name"), item.get("alias")
            if not isinstance(name, str) or not name.strip():
                c.fail(_line(item, "name") or _line(items, i), f"{fld}.name", "is required (the upstream model name)")
                continue
            if not isinstance(alias, str) or not alias.strip():
                c.fail(_line(item, "alias") or _line(items, i), f"{fld}.alias",
                       "is required (the name clients ask for)")
                continue
            for key in item:
                if key in NOT_IMPLEMENTED_MODEL:
                    c.warn(_line(item, key), f"{fld}.{key}", f"{NOT_YET} ({NOT_IMPLEMENTED_MODEL[key]})")
                elif key not in OAUTH_ALIAS_KEYS:
                    c.warn(_line(item, key), f"{fld}.{key}", "unknown key, ignored")
            fork = _get(c, item, "fork", f"{fld}.fork", bool, False)
            out.setdefault(channel, []).append(OAuthAlias(name.strip(), alias.strip(), fork))
    return out


def _oauth_excluded(c: _Checker, raw: dict[str, Any]) -> dict[str, list[str]]:
    """``oauth-excluded-models.<channel>: [pattern, ...]`` (globs: ``prefix*``, ``*suffix``, ``*sub*``)."""
    out: dict[str, list[str]] = {}
    value = _channel_map(c, raw, "oauth-excluded-models")
    for channel in value:
        patterns = _str_list(c, value, channel, f"oauth-excluded-models.{channel}")
        if patterns:
            out[channel] = patterns
    return out


def _observability(c: _Checker, raw: dict[str, Any], s: Settings) -> None:
    """Usage store, logs, management API and upstream WebSocket keys (issues 10 and 11)."""
    s.usage_statistics_enabled = _get(c, raw, "usage-statistics-enabled", "usage-statistics-enabled", bool, False)
    s.usage_database_url = _url(c, raw, "usage-database-url", "usage-database-url",
                                schemes=("postgres", "postgresql"))
    for key, attr in (("data-dir", "data_dir"), ("logs-dir", "logs_dir")):
        value = _get(c, raw, key, key, str, getattr(s, attr))
        if not value.strip():
            c.fail(_line(raw, key), key, "must not be empty")
        setattr(s, attr, value)
    kb = _get(c, raw, "request-log-max-body-kb", "request-log-max-body-kb", int, 1024)
    if kb <= 0:
        c.fail(_line(raw, "request-log-max-body-kb"), "request-log-max-body-kb", "must be greater than 0")
    s.request_log_max_body = kb * 1024
    s.error_logs_max_files = _get(c, raw, "error-logs-max-files", "error-logs-max-files", int, 10)
    if s.error_logs_max_files < 0:
        c.fail(_line(raw, "error-logs-max-files"), "error-logs-max-files", "must be 0 or more")
    s.logs_max_total_size_mb = _get(c, raw, "logs-max-total-size-mb", "logs-max-total-size-mb", float, 0.0)
    if s.logs_max_total_size_mb < 0:
        c.fail(_line(raw, "logs-max-total-size-mb"), "logs-max-total-size-mb", "must be 0 or more")
    rm = raw.get("remote-management") or {}
    if not isinstance(rm, dict):
        c.fail(_line(raw, "remote-management"), "remote-management", "must be a mapping")
        rm = {}
    s.remote_management = RemoteManagement(
        secret_key=_get(c, rm, "secret-key", "remote-management.secret-key", str, "") or "",
        allow_remote=_get(c, rm, "allow-remote", "remote-management.allow-remote", bool, False),
        disable_control_panel=_get(c, rm, "disable-control-panel", "remote-management.disable-control-panel",
                                   bool, False),
        line=_line(raw, "remote-management") or 0,
    )
    for key in rm:
        if key not in ("secret-key", "allow-remote", "disable-control-panel", "panel-github-repository"):
            c.warn(_line(rm, key), f"remote-management.{key}", "unknown key, ignored")
    for key, attr in (("upstream-websocket-idle-seconds", "ws_idle_ttl"),
                      ("upstream-websocket-max-age-seconds", "ws_max_age")):
        value = _get(c, raw, key, key, float, getattr(s, attr))
        if value <= 0:
            c.fail(_line(raw, key), key, "must be greater than 0")
        setattr(s, attr, value)


def load(path: str | os.PathLike[str]) -> Settings:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [(None, "", f"cannot read: {exc.strerror or exc}")]) from None
    return parse(text, str(p))


def find_config(explicit: str | None) -> Path | None:
    """--config wins; else ./config.yaml; else ~/.crossroute/config.yaml."""
    if explicit:
        return Path(explicit)
    for candidate in (Path.cwd() / "config.yaml", Path.home() / ".crossroute" / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(s: Settings) -> str | None:
    """Refuse to serve without keys on a non-loopback address unless explicitly allowed."""
    if not s.api_keys and not is_loopback(s.host) and not s.allow_unauthenticated:
        return (
            f"{s.path}: refusing to listen on {s.host} with no api-keys: anyone who can reach this address could "
            "use your upstream credentials. Add api-keys, bind 127.0.0.1, or set allow-unauthenticated: true."
        )
    return None
