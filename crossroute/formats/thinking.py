"""Reasoning levels and budgets: one mapping shared by every translator, and the model
thinking suffix (``model(high)``, ``model(8192)``, ``model(auto)``, ``model(none)``)."""

from __future__ import annotations

import re

from .neutral import Reasoning

LEVEL_BUDGETS: dict[str, int] = {
    "none": 0,
    "auto": -1,
    "minimal": 512,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 32768,
    "max": 128000,
}

_SUFFIX = re.compile(r"^(?P<base>.+)\((?P<arg>[A-Za-z]+|-?\d+)\)$")


def budget_for(effort: str) -> int:
    """Token budget for a level; unknown levels count as medium."""
    return LEVEL_BUDGETS.get(effort.lower(), LEVEL_BUDGETS["medium"])


def effort_for(budget: int) -> str:
    if budget < 0:
        return "auto"
    if budget == 0:
        return "none"
    if budget <= 512:
        return "minimal"
    if budget <= 1024:
        return "low"
    if budget <= 8192:
        return "medium"
    if budget <= 24576:
        return "high"
    return "xhigh"


def effective_budget(r: Reasoning) -> int | None:
    if r.budget is not None:
        return r.budget
    if r.effort is not None:
        return budget_for(r.effort)
    return None


def effective_effort(r: Reasoning) -> str | None:
    if r.effort is not None:
        return r.effort
    if r.budget is not None:
        return effort_for(r.budget)
    return None


def split_suffix(model: str) -> tuple[str, Reasoning | None]:
    """``gpt-5(high)`` -> ("gpt-5", Reasoning(effort="high")); no suffix -> (model, None)."""
    if not model.endswith(")"):
        return model, None
    m = _SUFFIX.match(model)
    if m is None:
        return model, None
    arg = m.group("arg")
    if arg.lstrip("-").isdigit():
        return m.group("base"), Reasoning(budget=int(arg))
    arg = arg.lower()
    if arg not in LEVEL_BUDGETS:
        return model, None
    return m.group("base"), Reasoning(effort=arg)


def apply_to_body(fmt: str, body: dict, r: Reasoning, model: str) -> None:  # type: ignore[type-arg]
    """Apply a suffix-requested reasoning level to a same-format (passthrough) body in place."""
    effort = effective_effort(r) or "medium"
    budget = effective_budget(r)
    if fmt == "openai":
        body["reasoning_effort"] = effort
    elif fmt == "responses":
        current = body.get("reasoning")
        body["reasoning"] = {**(current if isinstance(current, dict) else {}), "effort": effort}
    elif fmt == "claude":
        if effort == "none" or budget == 0:
            body["thinking"] = {"type": "disabled"}
            return
        budget = max(1024, budget if budget and budget > 0 else LEVEL_BUDGETS["medium"])
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or max_tokens <= budget:
            body["max_tokens"] = budget + 4096
        body.pop("temperature", None)
    elif fmt == "gemini":
        gen = body.get("generationConfig")
        if not isinstance(gen, dict):
            gen = body["generationConfig"] = {}
        cfg = gen.get("thinkingConfig")
        cfg = dict(cfg) if isinstance(cfg, dict) else {}
        if model.lower().startswith("gemini-3") and budget not in (None, -1, 0):
            cfg.pop("thinkingBudget", None)
            cfg["thinkingLevel"] = "low" if effort in ("minimal", "low") else "high"
        else:
            cfg["thinkingBudget"] = budget if budget is not None else -1
        if budget != 0:
            cfg.setdefault("includeThoughts", True)
        gen["thinkingConfig"] = cfg
