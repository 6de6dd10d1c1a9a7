"""The official SDKs against ``crossroute serve --config config.example.yaml``: the built-in mock
upstream answers every client API, streaming and not, with its deterministic text and usage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as gtypes

from .example_gateway import ExampleGateway

QUESTION = "What is the capital of Mexico?"
ANSWER = "mock answer to: What is the capital of Mexico?"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleGateway]:
    g = ExampleGateway(Path(tmp_path_factory.mktemp("example"))).start()
    yield g
    g.stop()


def oa(gw: ExampleGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=20)


def test_models_lists_the_mock_models(gw: ExampleGateway) -> None:
    ids = {m.id: m.owned_by for m in oa(gw).models.list()}
    assert ids == {"local": "mock", "mock-model": "mock"}


@pytest.mark.parametrize("model", ["local", "mock-model"])
def test_openai_chat(gw: ExampleGateway, model: str) -> None:
    r = oa(gw).chat.completions.create(model=model, messages=[{"role": "user", "content": QUESTION}])
    assert r.choices[0].message.content == ANSWER and r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.prompt_tokens == 8 and r.usage.completion_tokens == 12
    chunks = list(oa(gw).chat.completions.create(model=model, messages=[{"role": "user", "content": QUESTION}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # really streamed
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12


def test_openai_responses(gw: ExampleGateway) -> None:
    r = oa(gw).responses.create(model="local", input=QUESTION)
    assert r.output_text == ANSWER and r.usage is not None and r.usage.output_tokens == 12
    events = list(oa(gw).responses.create(model="local", input=QUESTION, stream=True))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == ANSWER
    assert events[-1].type == "response.completed" and events[-1].response.output_text == ANSWER


def test_anthropic(gw: ExampleGateway) -> None:
    client = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0, timeout=20)
    msg = client.messages.create(model="local", max_tokens=100, messages=[{"role": "user", "content": QUESTION}])
    assert msg.content[0].type == "text" and msg.content[0].text == ANSWER
    assert msg.usage.input_tokens == 8 and msg.usage.output_tokens == 12 and msg.stop_reason == "end_turn"
    with client.messages.stream(model="local", max_tokens=100,
                                messages=[{"role": "user", "content": QUESTION}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ANSWER and final.usage.output_tokens == 12


def test_google_genai(gw: ExampleGateway) -> None:
    client = genai.Client(api_key="unused", http_options=gtypes.HttpOptions(base_url=gw.url, api_version="v1beta"))
    r = client.models.generate_content(model="local", contents=QUESTION)
    assert r.text == ANSWER
    assert r.usage_metadata is not None and r.usage_metadata.candidates_token_count == 12
    parts = list(client.models.generate_content_stream(model="local", contents=QUESTION))
    assert "".join(p.text or "" for p in parts) == ANSWER and len(parts) > 3
