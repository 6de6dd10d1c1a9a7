"""Accounts as CLIProxyAPI stores them: one JSON object per file, typed here, raw kept for rewrites.

An ``Account`` is the credential of one subscription or cloud account, separate from any config
entry. ``raw`` is the whole file as read; crossroute changes only the fields it owns (tokens,
expiry, ``disabled``, ``needs_login``) and writes every other field back unchanged, so CLIProxyAPI
reads crossroute's files and the other way round. The common fields accept ``-`` and ``_``
spellings (``proxy-url`` / ``proxy_url``); a rewrite keeps the spelling the file used.
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["ACTIVE", "DISABLED", "NEEDS_LOGIN", "PROVIDERS", "Account", "AccountError", "claude_file_name",
           "codex_file_name", "email_file_name", "format_time", "kimi_file_name", "parse_account", "parse_time",
           "vertex_file_name", "xai_file_name"]

ACTIVE = "active"
NEEDS_LOGIN = "needs login"
DISABLED = "disabled"

# provider type -> what kind of secret its file must carry
PROVIDERS = {
    "claude": "oauth",
    "codex": "oauth",
    "kimi": "oauth",
    "antigravity": "oauth",
    "xai": "oauth",
    "vertex": "service_account",
}
_TOKEN_FIELDS = ("access_token", "refresh_token", "id_token", "api_key")


class AccountError(ValueError):
    """A file that is not an account crossroute can use; the message names the problem."""


def _get(raw: dict[str, Any], key: str) -> Any:
    if key in raw:
        return raw[key]
    return raw.get(key.replace("_", "-"))


def _key_in(raw: dict[str, Any], key: str) -> str:
    """The spelling of ``key`` the file already uses (``_`` for a new field)."""
    dashed = key.replace("_", "-")
    if key not in raw and dashed in raw:
        return dashed
    return key


def parse_time(value: Any) -> float | None:
    """An expiry as CLIProxyAPI writes it (RFC 3339) or as epoch seconds/milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        v = float(value)
        return v / 1000.0 if v > 1e11 else v
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return parse_time(float(text))
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    return None


def format_time(ts: float) -> str:
    """RFC 3339 in UTC, seconds precision (what CLIProxyAPI's Go ``time.RFC3339`` reads)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _as_int(value: Any, default: int, name: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise AccountError(f"field {name!r} must be a number")
    try:
        return int(value)
    except ValueError:
        raise AccountError(f"field {name!r} must be a number") from None


def _as_str(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise AccountError(f"field {name!r} must be a string")
    return value


def _aliases(value: Any) -> dict[str, str]:
    """``model_aliases`` as ``{upstream name: alias}``: a map, or a list of ``{name, alias}``."""
    if value is None:
        return {}
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and isinstance(v, str):
                out[k] = v
        return out
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                name, alias = item.get("name"), item.get("alias")
                if isinstance(name, str) and isinstance(alias, str):
                    out[name] = alias
        return out
    raise AccountError("field 'model_aliases' must be a map or a list of {name, alias}")


@dataclass(slots=True)
class Account:
    """One credential file. ``name`` is the file name (CLIProxyAPI's id for it)."""

    name: str
    path: Path
    provider: str
    raw: dict[str, Any]
    email: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    id_token: str | None = None
    api_key: str | None = None
    expires_at: float | None = None
    last_refresh: float | None = None
    disabled: bool = False
    needs_login: bool = False
    priority: int = 0
    weight: int = 1
    prefix: str | None = None
    proxy_url: str | None = None
    base_url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    excluded_models: list[str] = field(default_factory=list)
    model_aliases: dict[str, str] = field(default_factory=dict)
    websockets: bool = False

    @property
    def status(self) -> str:
        if self.disabled:
            return DISABLED
        if self.needs_login:
            return NEEDS_LOGIN
        return ACTIVE

    @property
    def usable(self) -> bool:
        return self.status == ACTIVE

    @property
    def label(self) -> str:
        """How logs and ``auth list`` name it: the file name (the email is part of it)."""
        return self.name

    def secrets(self) -> list[str]:
        return [v for v in (self.access_token, self.refresh_token, self.id_token, self.api_key) if v]

    # ---- rewrites: only the fields crossroute owns change; everything else is kept
    def with_tokens(self, *, access_token: str, refresh_token: str | None, expires_at: float | None,
                    id_token: str | None = None, now: float | None = None,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The file's object after a refresh (a grant without a new refresh token keeps the old)."""
        now = time.time() if now is None else now
        raw = dict(self.raw)
        raw["access_token"] = access_token
        if refresh_token:
            raw["refresh_token"] = refresh_token
        if id_token:
            raw["id_token"] = id_token
        if expires_at is not None:
            raw["expired"] = format_time(expires_at)
            if "expires_in" in raw:
                raw["expires_in"] = max(0, int(expires_at - now))
            if "timestamp" in raw:
                raw["timestamp"] = int(now * 1000)
        raw["last_refresh"] = format_time(now)
        raw.pop("needs_login", None)
        if extra:
            raw.update(extra)
        return raw

    def with_fields(self, **values: Any) -> dict[str, Any]:
        """The file's object with these fields set (``None`` removes one), spelling kept."""
        raw = dict(self.raw)
        for key, value in values.items():
            k = _key_in(raw, key)
            if value is None:
                raw.pop(k, None)
            else:
                raw[k] = value
        return raw


def parse_account(path: Path, raw: dict[str, Any]) -> Account:
    """The typed account of one file's object; ``AccountError`` naming what is missing or wrong."""
    provider = raw.get("type")
    if not isinstance(provider, str) or not provider:
        raise AccountError("has no 'type' field (claude, codex, kimi, antigravity, vertex or xai)")
    provider = provider.strip().lower()
    kind = PROVIDERS.get(provider)
    if kind is None:
        raise AccountError(f"has type {provider!r}, which crossroute does not support "
                           f"(supported: {', '.join(sorted(PROVIDERS))})")
    tokens = {k: _as_str(_get(raw, k), k) for k in _TOKEN_FIELDS}
    if kind == "oauth" and not (tokens["access_token"] or tokens["refresh_token"] or tokens["api_key"]):
        raise AccountError("has neither 'access_token' nor 'refresh_token'")
    if kind == "service_account":
        sa = _get(raw, "service_account")
        if not tokens["api_key"] and not (isinstance(sa, dict) and sa.get("private_key") and sa.get("client_email")):
            raise AccountError("has no 'service_account' with 'private_key' and 'client_email'")
    headers = _get(raw, "headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise AccountError("field 'headers' must be a map of strings")
    excluded = _get(raw, "excluded_models") or []
    if not isinstance(excluded, list) or not all(isinstance(v, str) for v in excluded):
        raise AccountError("field 'excluded_models' must be a list of strings")
    expires = parse_time(_get(raw, "expired"))
    if expires is None and _get(raw, "timestamp") is not None and _get(raw, "expires_in") is not None:
        start, life = parse_time(_get(raw, "timestamp")), _get(raw, "expires_in")
        if start is not None and isinstance(life, int | float):
            expires = start + float(life)
    email = _as_str(_get(raw, "email"), "email")
    return Account(
        name=path.name, path=path, provider=provider, raw=raw, email=email,
        access_token=tokens["access_token"], refresh_token=tokens["refresh_token"],
        id_token=tokens["id_token"], api_key=tokens["api_key"],
        expires_at=expires, last_refresh=parse_time(_get(raw, "last_refresh")),
        disabled=_as_bool(_get(raw, "disabled")), needs_login=_as_bool(_get(raw, "needs_login")),
        priority=_as_int(_get(raw, "priority"), 0, "priority"),
        weight=max(1, _as_int(_get(raw, "weight"), 1, "weight")),
        prefix=_as_str(_get(raw, "prefix"), "prefix"),
        proxy_url=_as_str(_get(raw, "proxy_url"), "proxy_url"),
        base_url=_as_str(_get(raw, "base_url"), "base_url"),
        headers={str(k): v for k, v in headers.items()},
        excluded_models=list(excluded),
        model_aliases=_aliases(_get(raw, "model_aliases")),
        websockets=_as_bool(_get(raw, "websockets")),
    )


# ------------------------------------------------------------------ file names (CLIProxyAPI's)
def _safe(part: str) -> str:
    """A name component that cannot leave the directory: separators, ':' and controls become '_'."""
    part = part.strip()
    return "".join("_" if c in "/\\:" or unicodedata.category(c).startswith("C") else c for c in part)


def email_file_name(provider: str, email: str) -> str:
    return f"{provider}-{_safe(email)}.json"


def claude_file_name(email: str) -> str:
    return email_file_name("claude", email)


def codex_file_name(email: str, plan: str | None = None, account_id: str | None = None) -> str:
    """``codex-[<sha256(account_id)[:8]>-]<email>[-<plan>].json``."""
    parts = ["codex"]
    if account_id:
        parts.append(hashlib.sha256(account_id.encode()).hexdigest()[:8])
    parts.append(_safe(email))
    plan_words = [w.lower() for w in re.split(r"[^0-9A-Za-z]+", plan or "") if w]
    if plan_words:
        parts.append("-".join(plan_words))
    return "-".join(parts) + ".json"


def kimi_file_name(now: float | None = None) -> str:
    return f"kimi-{int((time.time() if now is None else now) * 1000)}.json"


def xai_file_name(email: str | None, sub: str | None = None, now: float | None = None) -> str:
    """``xai-<email>.json``, else ``xai-<sub>.json``, else ``xai-<unix ms>.json`` (CLIProxyAPI's rule:
    characters other than letters, digits, ``@._-`` become ``-``)."""
    for part in (email, sub):
        clean = re.sub(r"[^A-Za-z0-9@._-]", "-", (part or "").strip()).strip("-")
        if clean:
            return f"xai-{clean}.json"
    return f"xai-{int((time.time() if now is None else now) * 1000)}.json"


def vertex_file_name(project: str) -> str:
    return f"vertex-{_safe(project)}.json"
