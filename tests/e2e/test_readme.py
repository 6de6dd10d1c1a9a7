"""The README's SDK snippets, run verbatim against a running gateway."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from .conftest import CLIENT_KEY
from .gateway_process import GatewayProcess

README = Path(__file__).resolve().parents[2] / "README.md"
SNIPPET = re.compile(r"<!-- snippet: (?P<name>[\w-]+) -->\s*```python\n(?P<code>.*?)```", re.S)


def snippets() -> dict[str, str]:
    return {m["name"]: m["code"] for m in SNIPPET.finditer(README.read_text())}


def test_readme_has_the_four_sdk_snippets() -> None:
    assert set(snippets()) == {"openai-chat", "openai-responses", "anthropic", "google-genai"}


@pytest.mark.parametrize("name", ["openai-chat", "openai-responses", "anthropic", "google-genai"])
def test_readme_snippet_runs(gateway: GatewayProcess, name: str) -> None:
    code = snippets()[name]
    code = code.replace("http://127.0.0.1:8317", gateway.url).replace("your-crossroute-key", CLIENT_KEY)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README:{name}", "exec"), {})
    assert "Mexico" in out.getvalue()
