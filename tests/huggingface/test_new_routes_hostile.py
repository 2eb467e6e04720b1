"""The routes added in stop 25 (Cohere /v2/embed, TEI /similarity) answer hostile bodies with a 4xx JSON error, and
liveness keeps answering: a body over the 1 MiB limit, a lone surrogate, JSON nested 100k deep."""

import httpx
import pytest

ROUTES = ["/v2/embed", "/similarity"]


@pytest.mark.parametrize("path", ROUTES)
def test_hostile_bodies_are_4xx_and_the_server_stays_live(minilm, path):
    bodies = [
        b'{"texts": ["' + b"a" * (1 << 20) + b'"]}',  # over --max_request_bytes
        b'{"texts": ["\\ud800"], "inputs": {"source_sentence": "\\ud800", "sentences": ["\\ud800"]}}',
        b"[" * 100_000 + b"]" * 100_000,
    ]
    for body in bodies:
        response = httpx.post(f"{minilm.url}{path}", content=body, headers={"content-type": "application/json"},
                              timeout=60)
        assert 400 <= response.status_code < 500, (path, body[:40], response.status_code, response.text[:200])
        assert response.json()["error"], response.text[:200]
        assert httpx.get(f"{minilm.url}/v2/health/live", timeout=10).status_code == 200
