"""OpenAI-compatible routes, driven by the official `openai` Python client."""

import numpy as np
import openai
import pytest

from conformance import protocol as P

pytestmark = pytest.mark.openai


def _client(dep):
    return openai.OpenAI(base_url=f"{dep.http_url}/openai/v1", api_key="conformance", max_retries=0, timeout=60)


def test_embeddings_batch(minilm):
    res = _client(minilm).embeddings.create(model=minilm.model_name, input=P.TEXTS, encoding_format="float")
    assert res.object == "list"
    assert res.model == minilm.model_name
    assert [d.index for d in res.data] == list(range(len(P.TEXTS)))
    assert all(d.object == "embedding" for d in res.data)
    emb = np.asarray([d.embedding for d in res.data], dtype=np.float64)
    P.assert_embeddings(emb, len(P.TEXTS), minilm.embedding_dim)
    assert res.usage is not None and res.usage.prompt_tokens > 0 and res.usage.total_tokens >= res.usage.prompt_tokens


def test_embeddings_single_string(minilm):
    res = _client(minilm).embeddings.create(model=minilm.model_name, input="just one sentence", encoding_format="float")
    assert len(res.data) == 1
    P.assert_embeddings(np.asarray([res.data[0].embedding]), 1, minilm.embedding_dim)


def test_embeddings_base64_equals_float(minilm):
    """The client's default asks for base64; either way the vectors agree."""
    client = _client(minilm)
    as_float = client.embeddings.create(model=minilm.model_name, input=P.TEXTS[:2], encoding_format="float")
    default = client.embeddings.create(model=minilm.model_name, input=P.TEXTS[:2])
    P.assert_close([d.embedding for d in default.data], [d.embedding for d in as_float.data], P.ATOL, "base64 vs float")


def test_embeddings_agree_with_v1(minilm):
    res = _client(minilm).embeddings.create(model=minilm.model_name, input=P.TEXTS, encoding_format="float")
    with minilm.http() as http:
        v1 = P.v1_embeddings(P.v1_predict(http, minilm.model_name, P.TEXTS))
    assert [d.index for d in res.data] == list(range(len(P.TEXTS)))
    P.assert_close([d.embedding for d in res.data], v1, P.ATOL, "OpenAI vs V1")


def test_unknown_model(minilm):
    with pytest.raises(openai.APIStatusError) as exc:
        _client(minilm).embeddings.create(model="no-such-model", input="x", encoding_format="float")
    assert 400 <= exc.value.status_code < 500, exc.value.status_code
    # The client hands over the "error" object of OpenAI's error shape as .body.
    assert isinstance(exc.value.body, dict) and exc.value.body.get("message"), exc.value.body


def test_models_list(minilm):
    """GET /openai/v1/models lists the served model (when the runtime offers the route)."""
    with minilm.http() as http:
        r = http.get("/openai/v1/models")
    assert r.status_code == 200, f"GET /openai/v1/models -> {r.status_code}: {r.text[:200]}"
    ids = [m["id"] for m in r.json()["data"]]
    assert minilm.model_name in ids, ids


@pytest.mark.tasks
def test_completions(generative):
    res = _client(generative).completions.create(model=generative.model_name, prompt="The cat", max_tokens=5,
                                                 temperature=0)
    assert res.choices and isinstance(res.choices[0].text, str)
    assert res.usage is not None and 0 < res.usage.completion_tokens <= 5, res.usage


@pytest.mark.tasks
def test_chat_completions(generative):
    res = _client(generative).chat.completions.create(
        model=generative.model_name, messages=[{"role": "user", "content": "Hello"}], max_tokens=5, temperature=0)
    assert res.choices and res.choices[0].message.role == "assistant"
    assert isinstance(res.choices[0].message.content, str)


@pytest.mark.tasks
def test_chat_completions_stream(generative):
    stream = _client(generative).chat.completions.create(
        model=generative.model_name, messages=[{"role": "user", "content": "Hello"}], max_tokens=5, temperature=0,
        stream=True)
    chunks = list(stream)
    assert chunks, "no streamed chunks"
    text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    whole = _client(generative).chat.completions.create(
        model=generative.model_name, messages=[{"role": "user", "content": "Hello"}], max_tokens=5, temperature=0)
    assert text == whole.choices[0].message.content, (text, whole.choices[0].message.content)
    finished = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finished == [whole.choices[0].finish_reason], finished
