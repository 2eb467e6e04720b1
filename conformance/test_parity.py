"""Both runtimes give the same answers for the same inputs (floats within --atol, default 1e-4)."""

import numpy as np
import pytest

from conformance import protocol as P

pytestmark = pytest.mark.parity

PARITY_TEXTS = P.TEXTS + [
    "x",
    "Ünïcödé, emoji 🤗 and 中文 text in one line.",
    "   leading and trailing spaces   ",
    " ".join(["a long sentence that goes past the model's maximum sequence length"] * 80),
]


def test_v1(pair):
    a, b = pair
    with a.http() as ha, b.http() as hb:
        ea = P.v1_embeddings(P.v1_predict(ha, a.model_name, PARITY_TEXTS))
        eb = P.v1_embeddings(P.v1_predict(hb, b.model_name, PARITY_TEXTS))
    P.assert_close(ea, eb, P.ATOL, f"V1 {a.id} vs {b.id}")


def test_v2_rest(pair):
    a, b = pair
    with a.http() as ha, b.http() as hb:
        oa = P.v2_outputs(P.v2_infer(ha, a.model_name, PARITY_TEXTS))
        ob = P.v2_outputs(P.v2_infer(hb, b.model_name, PARITY_TEXTS))
    assert set(oa) == set(ob), (set(oa), set(ob))
    for name in oa:
        P.assert_close(oa[name], ob[name], P.ATOL, f"V2 output {name}")


def test_openai(pair):
    a, b = pair
    body = {"model": None, "input": PARITY_TEXTS, "encoding_format": "float"}
    with a.http() as ha, b.http() as hb:
        ra = P.ok_json(ha.post("/openai/v1/embeddings", json={**body, "model": a.model_name}))
        rb = P.ok_json(hb.post("/openai/v1/embeddings", json={**body, "model": b.model_name}))
    P.assert_close(P.openai_vectors(ra), P.openai_vectors(rb), P.ATOL, "OpenAI embeddings")
    assert ra["usage"]["prompt_tokens"] == rb["usage"]["prompt_tokens"], (ra["usage"], rb["usage"])


def test_metadata(pair):
    a, b = pair
    with a.http() as ha, b.http() as hb:
        ma = P.ok_json(ha.get(f"/v2/models/{a.model_name}"))
        mb = P.ok_json(hb.get(f"/v2/models/{b.model_name}"))
    strip = lambda m: sorted((t["name"], t["datatype"], tuple(t["shape"])) for t in m)  # noqa: E731
    assert strip(ma["inputs"]) == strip(mb["inputs"]), (ma["inputs"], mb["inputs"])
    assert strip(ma["outputs"]) == strip(mb["outputs"]), (ma["outputs"], mb["outputs"])


@pytest.mark.tasks
def test_tiny_tasks_v1(tiny_pair):
    """Classification, token classification and fill-mask answers agree between the runtimes."""
    a, b = tiny_pair
    texts = ["The food at the restaurant was delicious.", "John Smith lives in New York.",
             "Thank you very much for your help."]
    if "fill_mask" in a.id:
        texts = ["The food at the [MASK] was delicious.", "John Smith lives in New [MASK].",
                 "Paris is the [MASK] of France."]
    with a.http() as ha, b.http() as hb:
        pa = P.v1_predictions(P.v1_predict(ha, a.model_name, texts))
        pb = P.v1_predictions(P.v1_predict(hb, b.model_name, texts))
    assert len(pa) == len(pb) == len(texts)
    if P.ATOL <= 1e-4:  # labels of near-ties in random tiny models may flip in float16
        assert list(P.strings_in(pa)) == list(P.strings_in(pb)), (pa, pb)
    fa, fb = np.asarray(list(P.floats_in(pa))), np.asarray(list(P.floats_in(pb)))
    P.assert_close(fa, fb, P.ATOL, f"V1 {a.task}")


@pytest.mark.tasks
def test_tiny_tasks_v2(tiny_pair):
    a, b = tiny_pair
    texts = ["The cat sat on the mat.", "Emma visited her grandmother in Rome."]
    if "fill_mask" in a.id:
        texts = [t.replace("mat", "[MASK]").replace("Rome", "[MASK]") for t in texts]
    with a.http() as ha, b.http() as hb:
        oa = P.v2_outputs(P.v2_infer(ha, a.model_name, texts))
        ob = P.v2_outputs(P.v2_infer(hb, b.model_name, texts))
    assert set(oa) == set(ob), (set(oa), set(ob))
    for name in oa:
        if oa[name].dtype == object:
            assert oa[name].tolist() == ob[name].tolist(), name
        else:
            P.assert_close(oa[name], ob[name], P.ATOL, f"V2 {a.task} output {name}")
