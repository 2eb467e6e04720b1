"""/tokenize returns at most --max_tokenize_tokens per request: beyond it a 413 naming the cap, found from the
beginning of an over-long text before the whole of it is tokenized (issue 20: 1 MiB of "." was a million tokens,
a 70 MB answer and a replica stalled for 14 s)."""

import httpx


def test_a_megabyte_of_dots_is_a_413_naming_the_cap(minilm):
    text = "." * ((1 << 20) - 64)  # just under the body limit
    response = httpx.post(f"{minilm.url}/tokenize", json={"inputs": text}, timeout=120)
    assert response.status_code == 413, response.text[:300]
    body = response.json()
    assert body["error_type"] == "validation" and "16384" in body["error"], body
    assert len(response.content) < 1000
    assert httpx.get(f"{minilm.url}/v2/health/live", timeout=30).status_code == 200


def test_the_budget_is_per_request_and_what_fits_is_served(minilm):
    fits = httpx.post(f"{minilm.url}/tokenize", json={"inputs": ["word " * 8000, "word " * 8000]}, timeout=120)
    assert fits.status_code == 200 and [len(t) for t in fits.json()] == [8002, 8002]
    over = httpx.post(f"{minilm.url}/tokenize", json={"inputs": ["word " * 8000] * 3}, timeout=120)
    assert over.status_code == 413, over.text[:300]
    sparse = httpx.post(f"{minilm.url}/tokenize", json={"inputs": " " * 500_000 + "one two"}, timeout=120)
    assert sparse.status_code == 200 and len(sparse.json()[0]) == 4  # long but few tokens: served
