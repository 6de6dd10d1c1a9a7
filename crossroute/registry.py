"""Which credentials serve which model: aliases, upstream names, prefixes, exclusions.

Built once per config (re)load; ``resolve`` is a dict lookup on the hot path.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass

from . import redaction
from .config import ProviderEntry, Settings, secret_values
from .providers import EXECUTORS, Executor, executor_for

log = logging.getLogger("crossroute")
_UNSERVED: set[str] = set()  # kinds already logged as having no executor in this build


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
        self.executor: Executor = executor_for(entry.kind)
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


def _excluded(entry: ProviderEntry, name: str) -> bool:
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, pattern.lower()) for pattern in entry.excluded_models)


class Registry:
    def __init__(self, settings: Settings) -> None:
        self._by_alias: dict[str, list[Candidate]] = {}
        self._by_name: dict[str, list[Candidate]] = {}
        self._family: list[ProviderEntry] = []
        self._models: dict[str, ModelInfo] = {}
        self._force_prefix = settings.force_model_prefix
        # every configured upstream secret is masked by value in error bodies and log lines
        redaction.set_secrets(secret_values(settings))
        for entry in settings.providers:
            if entry.disabled or not _servable(entry):
                continue
            if not entry.models:
                if entry.kind in _FAMILY_PATTERNS:
                    self._family.append(entry)
                continue
            for m in entry.models:
                if _excluded(entry, m.name) or (m.alias and _excluded(entry, m.alias)):
                    continue
                cand = Candidate(entry, m.name)
                if m.alias:
                    self._expose(self._by_alias, entry, m.alias, cand)
                self._expose(self._by_name, entry, m.name, cand)

    def _expose(self, table: dict[str, list[Candidate]], entry: ProviderEntry, public: str, cand: Candidate) -> None:
        names = []
        if entry.prefix:
            names.append(f"{entry.prefix}/{public}")
        if not entry.prefix or not self._force_prefix:
            names.append(public)
        for name in names:
            table.setdefault(name.lower(), []).append(cand)
            self._models.setdefault(name.lower(), ModelInfo(name, entry.name, entry.kind))

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
