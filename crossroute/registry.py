"""Which credentials serve which model: aliases, upstream names, prefixes, exclusions.

Built once per config (re)load and once per change of the accounts in ``auth-dir``; ``resolve`` is
a dict lookup on the hot path. Config entries serve their ``models`` (an alias adds a name, the
upstream name stays served); with no ``models``, the family patterns of their kind, or, for kinds
without a family (``vertex-api-key``, ``xai-api-key``), the executor's ``models``. Account entries
(``accounts``, made by ``auth/serving.py``) serve exactly the names their ``models`` list: an alias
there replaces the upstream name (``fork`` items are listed twice). ``/v1/models`` shows account
models as owned by the account's kind.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import redaction
from .config import ModelMap, ProviderEntry, Settings, secret_values
from .providers import EXECUTORS, Executor, executor_for

log = logging.getLogger("crossroute")
_UNSERVED: set[str] = set()  # kinds already logged as having no executor in this build
_NO_WS: set[str] = set()  # kinds already logged as falling back to HTTP


def _executor(entry: ProviderEntry) -> Executor:
    """The entry's executor; over WebSocket when it asks for that and this build can (else HTTP,
    one log line per kind)."""
    if not entry.websockets:
        return executor_for(entry.kind)
    try:
        return executor_for(entry.kind, True)
    except (ImportError, ValueError, TypeError) as exc:
        if entry.kind not in _NO_WS:
            _NO_WS.add(entry.kind)
            log.warning("websockets: %s (%s) is reached over HTTP: no upstream WebSocket for kind %r here (%s)",
                        entry.name, entry.kind, entry.kind, exc)
        return executor_for(entry.kind)


def _servable(entry: ProviderEntry) -> bool:
    if entry.kind in EXECUTORS:
        return True
    if entry.kind not in _UNSERVED:
        _UNSERVED.add(entry.kind)
        log.warning("no executor for upstream kind %r in this build: %s and every other %s credential skipped",
                    entry.kind, entry.name, entry.kind)
    return False


# API-key providers with no ``models`` list serve their own family's model names.
_FAMILY_PATTERNS = {
    "claude": ("claude-*",),
    "gemini": ("gemini-*", "gemma-*", "learnlm-*"),
    "codex": ("gpt-*", "o1*", "o3*", "o4*", "codex-*"),
}


class Candidate:
    """One way to serve a request: a credential and the model name the upstream must receive."""

    __slots__ = ("credential_id", "disabled", "entry", "executor", "priority", "provider", "upstream_model", "weight")

    def __init__(self, entry: ProviderEntry, upstream_model: str) -> None:
        self.entry = entry
        self.executor: Executor = _executor(entry)
        self.upstream_model = upstream_model
        self.credential_id = entry.id
        self.provider = entry.provider
        self.priority = entry.priority
        self.weight = entry.weight
        self.disabled = entry.disabled

    def __repr__(self) -> str:
        return f"Candidate({self.credential_id!r}, {self.upstream_model!r})"


@dataclass(slots=True)
class ModelInfo:
    id: str
    owned_by: str
    provider_kind: str


def excluded(patterns: Iterable[str], name: str) -> bool:
    """Whether ``name`` matches one of the ``excluded-models`` glob ``patterns`` (case-insensitive)."""
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, pattern.lower()) for pattern in patterns)


def _excluded(entry: ProviderEntry, name: str) -> bool:
    return excluded(entry.excluded_models, name)


class Registry:
    def __init__(self, settings: Settings, accounts: Sequence[ProviderEntry] = (),
                 secrets: Iterable[str] = ()) -> None:
        """``accounts``: the entries of the usable accounts; ``secrets``: their tokens. The one
        place the known secrets are set: every configured secret and every account token is masked
        by value in error bodies and log lines."""
        self._by_alias: dict[str, list[Candidate]] = {}
        self._by_name: dict[str, list[Candidate]] = {}
        self._family: list[ProviderEntry] = []
        self._models: dict[str, ModelInfo] = {}
        self._force_prefix = settings.force_model_prefix
        self.accounts = list(accounts)
        redaction.set_secrets([*secret_values(settings), *secrets])
        for entry in settings.providers:
            if entry.disabled or not _servable(entry):
                continue
            models = entry.models
            if not models:
                if entry.kind in _FAMILY_PATTERNS:
                    self._family.append(entry)
                    continue
                models = [ModelMap(name) for name in getattr(EXECUTORS[entry.kind], "models", ()) or ()]
            for m in models:
                if _excluded(entry, m.name) or (m.alias and _excluded(entry, m.alias)):
                    continue
                cand = Candidate(entry, m.name)
                if m.alias:
                    self._expose(self._by_alias, entry, m.alias, cand, entry.name)
                self._expose(self._by_name, entry, m.name, cand, entry.name)
        for entry in self.accounts:
            if entry.disabled or not _servable(entry):
                continue
            for m in entry.models:
                cand = Candidate(entry, m.name)
                if m.alias:
                    self._expose(self._by_alias, entry, m.alias, cand, entry.provider)
                else:
                    self._expose(self._by_name, entry, m.name, cand, entry.provider)

    def _expose(self, table: dict[str, list[Candidate]], entry: ProviderEntry, public: str, cand: Candidate,
                owner: str) -> None:
        names = []
        if entry.prefix:
            names.append(f"{entry.prefix}/{public}")
        if not entry.prefix or not self._force_prefix:
            names.append(public)
        for name in names:
            table.setdefault(name.lower(), []).append(cand)
            self._models.setdefault(name.lower(), ModelInfo(name, owner, entry.kind))

    def credential_ids(self) -> set[str]:
        """The ids of every credential this registry serves (config entries and accounts)."""
        ids = {c.credential_id for cands in (*self._by_alias.values(), *self._by_name.values()) for c in cands}
        ids.update(e.id for e in self._family)
        return ids

    def resolve(self, model: str) -> list[Candidate]:
        """Candidates for a client model name (case-insensitive; aliases win over upstream names)."""
        key = model.lower()
        found = self._by_alias.get(key) or self._by_name.get(key)
        if found:
            return found
        out: list[Candidate] = []
        for entry in self._family:
            name = model
            if entry.prefix and key.startswith(entry.prefix.lower() + "/"):
                name = model[len(entry.prefix) + 1 :]
            elif entry.prefix and self._force_prefix:
                continue
            low = name.lower()
            if any(fnmatch.fnmatchcase(low, p) for p in _FAMILY_PATTERNS[entry.kind]) and not _excluded(entry, name):
                out.append(Candidate(entry, name))
        return out

    def models(self) -> list[ModelInfo]:
        return list(self._models.values())
