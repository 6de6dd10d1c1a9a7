"""Which configured values are secrets, for ``redaction``: from the typed settings
(``secret_values``) and from the raw YAML tree of a file that may not validate (``raw_secrets``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .config_keys import KEY_LISTS
from .config_yaml import Expanded

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["raw_secrets", "secret_values"]

_CREDENTIAL_HEADER = re.compile(r"(?i)authorization|api[-_]?key|token|secret|password|passwd|cookie|session|"
                                r"credential|(^|[-_])(key|auth)($|[-_])")
_CREDENTIAL_VALUE = re.compile(r"(?i)^(bearer|basic|token|apikey|key)\s+(\S+)$")
_SECRET_VARIABLE = re.compile(r"(?i)key|token|secret|passw|credential|auth")
_SECRET_KEYS = frozenset({"api-key", "secret-key", "password", "token", "access-token", "refresh-token",
                          "client-secret", "credential"})


def _header_secrets(name: str, value: str) -> list[str]:
    """The secret parts of a configured header: its value when the header or value looks like a
    credential (and the token of ``Bearer <token>``); a ``$Name`` copy of a client header is none."""
    value = value.strip()
    if not value or value.startswith("$"):
        return []
    m = _CREDENTIAL_VALUE.match(value)
    if m:
        return [value, m.group(2)]
    return [value] if _CREDENTIAL_HEADER.search(name) else []


def _url_password(url: str | None) -> list[str]:
    if not url or "@" not in url:
        return []
    try:
        parts = urlsplit(url)
        return [parts.password] if parts.password else []
    except ValueError:
        return []


def secret_values(settings: Settings) -> list[str]:
    """Every configured secret, for ``redaction.set_secrets``: each upstream api-key, credential
    headers, proxy and Redis URL passwords, client api-keys, and what the file holds under other
    secret-looking keys. Longest first, no duplicates, no empty values."""
    found: list[str] = [*settings.api_keys, *_url_password(settings.proxy_url), *_url_password(settings.redis_url),
                        *_url_password(settings.usage_database_url), settings.remote_management.secret_key]
    for entry in settings.providers:
        found.append(entry.api_key)
        found.extend(_url_password(entry.proxy_url))
        for name, value in entry.headers.items():
            found.extend(_header_secrets(name, value))
    found.extend(settings.raw_secrets)
    return sorted({v for v in found if v}, key=lambda v: (-len(v), v))


def raw_secrets(raw: Any) -> list[str]:
    """Secrets in the parsed YAML tree before validation, so problem messages can mask them: values
    under secret keys, credential headers, URL passwords, and any value taken from an environment
    variable whose name says it is one (``${..._KEY}``, ``${..._TOKEN}``, ...), wherever it is used."""
    out: list[str] = []

    def value(k: str, v: str) -> None:
        if isinstance(v, Expanded) and any(_SECRET_VARIABLE.search(n) for n in v.names):
            out.append(v.strip())
        if k in _SECRET_KEYS:
            out.append(v.strip())
        elif k.endswith("-url"):
            out.extend(_url_password(v.strip()))

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                k = str(k).lower()
                if k == "headers" and isinstance(v, dict):
                    for hk, hv in v.items():
                        if isinstance(hv, str):
                            out.extend(_header_secrets(str(hk), hv))
                            value("", hv)
                elif isinstance(v, str):
                    value(k, v)
                else:
                    walk(v, k)
        elif isinstance(node, list):
            for item in node:
                if isinstance(item, str):
                    if key in KEY_LISTS:
                        out.append(item.strip())
                    value("", item)
                else:
                    walk(item, key)

    walk(raw)
    return [v for v in out if v]
