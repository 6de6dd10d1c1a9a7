"""The config keys crossroute knows, and the CLIProxyAPI keys it accepts but does not act on yet.

A key in none of these tables is warned about as unknown; a key in a ``NOT_IMPLEMENTED_*`` table is
warned about as accepted but not implemented, with what it would do. When one of them is
implemented, move it to the known keys and drop it from its table.
"""

from __future__ import annotations

__all__ = [
    "ENTRY_KEYS", "KEY_LISTS", "MOCK_KEYS", "NOT_IMPLEMENTED_ENTRY", "NOT_IMPLEMENTED_KEY_ENTRY",
    "NOT_IMPLEMENTED_MODEL", "NOT_IMPLEMENTED_TOP", "NOT_YET", "OAUTH_ALIAS_KEYS", "OAUTH_CHANNELS", "PROVIDER_LISTS",
    "TOP_KEYS",
]

PROVIDER_LISTS = ("openai-compatibility", "claude-api-key", "gemini-api-key", "codex-api-key", "vertex-api-key",
                  "xai-api-key")
# OAuth channels: the account providers that ``oauth-model-alias`` and ``oauth-excluded-models`` key by
OAUTH_CHANNELS = ("claude", "codex", "kimi", "antigravity", "vertex", "xai")

TOP_KEYS = frozenset({
    "host", "port", "api-keys", "debug", "proxy-url", "request-retry", "max-retry-interval",
    "allow-unauthenticated", "allowed-origins", "allowed-hosts", "body-limit-mb", "connect-timeout-seconds",
    "read-timeout-seconds", "default-max-tokens", "force-model-prefix", "disable-cooling",
    "transient-error-cooldown-seconds", "passthrough-headers", "routing", "state", "mock",
    "claude-code-session-affinity", "idle-timeout-seconds", "body-timeout-seconds", "max-connections",
    "shutdown-timeout-seconds", "max-session-bindings", "max-upstream-body-mb", "access-log",
    "usage-statistics-enabled", "usage-database-url", "data-dir", "logs-dir", "request-log", "request-log-max-body-kb",
    "error-logs-max-files", "logs-max-total-size-mb", "remote-management",
    "upstream-websocket-idle-seconds", "upstream-websocket-max-age-seconds", "auth-dir", "oauth-model-alias",
    "oauth-excluded-models", *PROVIDER_LISTS,
})
ENTRY_KEYS = frozenset({
    "name", "base-url", "prefix", "api-key-entries", "api-key", "proxy-url", "models", "headers", "priority",
    "weight", "disabled", "excluded-models", "responses", "websockets",
})
# entries of oauth-model-alias.<channel>
OAUTH_ALIAS_KEYS = frozenset({"name", "alias", "fork"})

# CLIProxyAPI keys, each with what it does there (the warning and the README say it)
NOT_IMPLEMENTED_TOP: dict[str, str] = {
    "tls": "TLS termination; put a TLS reverse proxy in front",
    "pprof": "the Go profiler endpoint",
    "commercial-mode": "turning off heavy middleware",
    "logging-to-file": "rotating log files; crossroute logs to stderr",
    "redis-usage-queue-retention-seconds": "the Redis usage queue",
    "ws-auth": "WebSocket API authentication; there is no WebSocket API yet",
    "nonstream-keepalive-interval": "blank-line keep-alives during non-stream answers",
    "streaming": "SSE keep-alives and bootstrap retries",
    "max-retry-credentials": "a cap on credentials tried per round",
    "save-cooldown-status": "cooldowns saved next to the auth files",
    "auth-auto-refresh-workers": "background OAuth refresh",
    "quota-exceeded": "project and preview-model switching on quota errors",
    "disable-claude-cloak-mode": "Claude Code request cloaking",
    "claude-code": "Claude Code cloaking options",
    "claude-header-defaults": "the Claude Code header fingerprint",
    "codex": "Codex cloaking, stream bootstrap buffering and media relay",
    "codex-header-defaults": "Codex client headers",
    "antigravity": "Antigravity upstreams",
    "antigravity-signature-cache-enabled": "Antigravity signature cache",
    "antigravity-signature-bypass-strict": "Antigravity signature checks",
    "xai": "xAI search injection",
    "disable-image-generation": "image generation switch",
    "gpt-image-2-base-model": "image generation",
    "video-result-auth-cache-ttl": "video results",
    "plugins": "plugins",
    "credential-concurrency": "per-credential concurrency limits",
    "credential-in-flight": "per-credential in-flight limits",
    "interactions-api-key": "Gemini Interactions API upstreams",
    "oauth-request-scoped-errors": "request-scoped error rules for OAuth channels",
    "payload": "payload default/override/filter rules",
}

NOT_IMPLEMENTED_ENTRY: dict[str, str] = {
    "disable-cooling": "a per-upstream cooling switch; the top-level disable-cooling works",
    "request-retry": "a per-upstream retry count; the top-level request-retry works",
    "request-scoped-errors": "rules that decide which errors fail over or cool down",
    "support-prompt-cache-key": "prompt_cache_key forwarding switch",
    "alpha-search": "Codex alpha search",
    "rebuild-mid-system-message": "rebuilding mid-conversation system messages",
    "cloak": "Claude Code request cloaking",
    "fingerprint-profile": "the Claude Code header fingerprint",
    "experimental-cch-signing": "Claude Code request signing",
}

NOT_IMPLEMENTED_KEY_ENTRY: dict[str, str] = {
    "weight": "per-key weights; the entry's weight works",
}

NOT_IMPLEMENTED_MODEL: dict[str, str] = {
    "display-name": "display names in /v1/models",
    "max-context-length": "context length in /v1/models",
    "force-mapping": "forced alias mapping",
    "thinking": "per-model thinking levels",
    "is-compat": "compatibility flag",
    "image": "image model flag",
    "input-modalities": "input modalities in /v1/models",
    "output-modalities": "output modalities in /v1/models",
}

NOT_YET = "accepted but not implemented yet, ignored"
# lists whose string items are credentials (the secrets of a file that does not validate)
KEY_LISTS = frozenset({*PROVIDER_LISTS, "api-keys", "interactions-api-key"})
MOCK_KEYS = frozenset({"name", "models", "prefix", "priority", "weight", "disabled", "excluded-models"})
