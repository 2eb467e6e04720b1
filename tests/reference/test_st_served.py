"""A checkpoint as sentence-transformers saves a current embedder (Transformer, mean Pooling, a Dense head, Normalize,
prompts with a default), served by both runtimes: every route gives `SentenceTransformer.encode`'s vectors, with
the default prompt, a chosen prompt_name, a free-text prompt, and Matryoshka dimensions (encode's truncate_dim,
renormalized)."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import modules as st

from devkit.tiny_models import SENTENCES, build_tiny_model

from ..servers import LaunchedTriton, ServerStarter
from . import grpc_embedding_types

pytestmark = pytest.mark.timeout(900)

TEXTS = ["Paris is the capital of France.", "the cat sat on the mat", " ".join(SENTENCES)]
PROMPTS = {"query": "query: ", "document": "passage: "}
NAME = "prompted"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("st-prompted")
    base = build_tiny_model("text_embedding", root / "base")
    torch.manual_seed(1)
    transformer = st.Transformer(str(base), max_seq_length=40)
    dim = transformer.get_embedding_dimension()
    model = SentenceTransformer(modules=[transformer, st.Pooling(dim, pooling_mode="mean"),
                                         st.Dense(dim, 16, activation_function=torch.nn.Tanh()), st.Normalize()],
                                prompts=PROMPTS, default_prompt_name="query", device="cpu")
    model.save(str(root / NAME))
    return root / NAME


@pytest.fixture(scope="module")
def reference(checkpoint):
    return SentenceTransformer(str(checkpoint), device="cpu")


ALIASES = ("st-alias", "text-embedding-3-small")
CLIENT_BATCH, SPLIT_BOUND = 2, 8  # every request of TEXTS (3) is split, here and in the tests above
SERVING = ("--served_model_name", ",".join(ALIASES), "--max_request_items", str(CLIENT_BATCH),
           "--auto_split_client_batches", "true", "--max_split_request_items", str(SPLIT_BOUND))


@pytest.fixture(scope="module", params=["huggingface", "triton"])
def server(request, checkpoint, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"served-{request.param}")
    starter = ServerStarter(workdir / "logs")
    triton = None
    try:
        if request.param == "huggingface":
            server = starter.start("hfserve.huggingface", checkpoint, NAME, *SERVING,
                                   ready_path="/v2/models/{model}/ready")
        else:
            export = workdir / "tokenizer"
            triton = LaunchedTriton(checkpoint, NAME, workdir, "--tokenizer_export_dir", str(export)).start(600)
            server = starter.start("hfserve.transformer", export, NAME, "--predictor_host", triton.grpc_target,
                                   *SERVING, ready_path="/v2/models/{model}/ready", timeout=300)
        yield server
    finally:
        starter.stop_all()
        if triton is not None:
            triton.stop()


@pytest.fixture(scope="module")
def server_url(server):
    return server.url


def v1(url: str, **parameters) -> np.ndarray:
    body = {"instances": TEXTS, **({"parameters": parameters} if parameters else {})}
    response = httpx.post(f"{url}/v1/models/{NAME}:predict", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["predictions"])


def test_default_prompt_and_dense_head(server_url, reference):
    expected = reference.encode(TEXTS)  # the checkpoint's default prompt, "query: "
    assert expected.shape == (3, 16)
    np.testing.assert_allclose(v1(server_url), expected, atol=1e-5, rtol=0)
    without = reference.encode(TEXTS, prompt="")
    assert np.abs(expected - without).max() > 1e-3  # so the prompt really changes the vectors


def test_chosen_prompts(server_url, reference):
    np.testing.assert_allclose(v1(server_url, prompt_name="document"),
                               reference.encode(TEXTS, prompt_name="document"), atol=1e-5, rtol=0)
    np.testing.assert_allclose(v1(server_url, prompt="Represent this: "),
                               reference.encode(TEXTS, prompt="Represent this: "), atol=1e-5, rtol=0)


def test_matryoshka_dimensions(server_url, reference):
    expected = reference.encode(TEXTS, truncate_dim=8, normalize_embeddings=True)
    got = v1(server_url, dimensions=8)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)


def test_unknown_prompt_and_too_many_dimensions_are_4xx(server_url):
    response = httpx.post(f"{server_url}/v1/models/{NAME}:predict",
                          json={"instances": TEXTS, "parameters": {"prompt_name": "poem"}}, timeout=60)
    assert response.status_code == 400 and "'document', 'query'" in response.json()["error"], response.text
    response = httpx.post(f"{server_url}/v1/models/{NAME}:predict",
                          json={"instances": TEXTS, "parameters": {"dimensions": 17}}, timeout=60)
    assert response.status_code == 400 and "16" in response.json()["error"], response.text


def test_every_route_family_applies_prompts_and_dimensions(server_url, reference):
    """TEI /embed and /tokenize, the OpenAI SDK (dimensions, base64, the /v1 alias), POST /, and /info."""
    import openai

    expected = reference.encode(TEXTS, prompt_name="document")
    tei = httpx.post(f"{server_url}/embed", json={"inputs": TEXTS, "prompt_name": "document"}, timeout=60)
    assert tei.status_code == 200, tei.text
    np.testing.assert_allclose(np.asarray(tei.json()), expected, atol=1e-5, rtol=0)
    cut = httpx.post(f"{server_url}/embed", json={"inputs": TEXTS, "dimensions": 8}, timeout=60).json()
    np.testing.assert_allclose(np.asarray(cut), reference.encode(TEXTS, truncate_dim=8, normalize_embeddings=True),
                               atol=1e-5, rtol=0)
    tokens = httpx.post(f"{server_url}/tokenize", json={"inputs": "x", "prompt_name": "document"}, timeout=60).json()
    assert [t["id"] for t in tokens[0]] == reference.tokenizer("passage: x")["input_ids"]

    for base in (f"{server_url}/openai/v1", f"{server_url}/v1"):
        client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0)
        answer = client.embeddings.create(model=NAME, input=TEXTS, dimensions=8)
        got = np.asarray([d.embedding for d in answer.data])
        np.testing.assert_allclose(got, reference.encode(TEXTS, truncate_dim=8, normalize_embeddings=True),
                                   atol=1e-5, rtol=0)
    client = openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0)
    default = client.embeddings.create(model=NAME, input=TEXTS)  # the SDK asks for base64 and decodes it
    np.testing.assert_allclose(np.asarray([d.embedding for d in default.data]), reference.encode(TEXTS),
                               atol=1e-5, rtol=0)
    packed = client.embeddings.create(model=NAME, input=TEXTS, encoding_format="base64")
    unpacked = [np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in packed.data]
    np.testing.assert_allclose(np.asarray(unpacked), reference.encode(TEXTS), atol=1e-5, rtol=0)

    hf = httpx.post(server_url, json={"inputs": TEXTS, "parameters": {"prompt_name": "document"}}, timeout=60)
    assert hf.status_code == 200, hf.text
    np.testing.assert_allclose(np.asarray(hf.json()), expected, atol=1e-5, rtol=0)
    info = httpx.get(f"{server_url}/info", timeout=30).json()
    assert info["default_prompt_name"] == "query" and info["prompts"]["document"] == "passage: "
    bad = httpx.post(f"{server_url}/v1/embeddings", json={"model": NAME, "input": "x", "prompt_name": "poem"},
                     timeout=60)
    assert bad.status_code == 400 and "query" in bad.json()["error"]["message"], bad.text


def test_cohere_v2_embed_with_the_cohere_sdk(server_url, reference):
    """cohere.ClientV2.embed unchanged: input_type picks the checkpoint's prompt, every embedding type is
    sentence-transformers' quantize_embeddings of encode() (int8/uint8 with the documented range [-1, 1])."""
    import cohere
    from sentence_transformers.util.quantization import quantize_embeddings

    client = cohere.ClientV2(api_key="unused", base_url=server_url)
    answer = client.embed(model=NAME, texts=TEXTS, input_type="search_document",
                          embedding_types=["float", "int8", "uint8", "binary", "ubinary", "base64"])
    expected = reference.encode(TEXTS, prompt_name="document")
    np.testing.assert_allclose(np.asarray(answer.embeddings.float_), expected, atol=1e-5, rtol=0)
    ranges = np.array([[-1.0] * 16, [1.0] * 16])
    for kind in ("int8", "uint8"):
        codes = np.asarray(getattr(answer.embeddings, kind))
        reference_codes = quantize_embeddings(expected, precision=kind, ranges=ranges)
        assert np.abs(codes.astype(int) - reference_codes.astype(int)).max() <= 1, kind  # float rounding at a step
    for kind in ("binary", "ubinary"):
        np.testing.assert_array_equal(np.asarray(getattr(answer.embeddings, kind)),
                                      quantize_embeddings(expected, precision=kind))
    unpacked = [np.frombuffer(base64.b64decode(v), dtype="<f4") for v in answer.embeddings.base64]
    np.testing.assert_allclose(np.asarray(unpacked), expected, atol=1e-5, rtol=0)
    query = client.embed(model=NAME, texts=TEXTS, input_type="search_query", embedding_types=["float"],
                         output_dimension=8)
    np.testing.assert_allclose(np.asarray(query.embeddings.float_),
                               reference.encode(TEXTS, prompt_name="query", truncate_dim=8, normalize_embeddings=True),
                               atol=1e-5, rtol=0)
    with pytest.raises(cohere.core.api_error.ApiError) as refused:
        client.embed(model=NAME, texts=TEXTS, input_type="search_query", embedding_types=["float"],
                     output_dimension=17)
    assert refused.value.status_code == 400


def test_tei_similarity_is_cosine_of_encode(server_url, reference):
    body = {"inputs": {"source_sentence": TEXTS[0], "sentences": TEXTS[1:]}, "parameters": {"prompt_name": "document"}}
    response = httpx.post(f"{server_url}/similarity", json=body, timeout=60)
    assert response.status_code == 200, response.text
    vectors = reference.encode(TEXTS, prompt_name="document", normalize_embeddings=True)
    np.testing.assert_allclose(response.json(), vectors[1:] @ vectors[0], atol=1e-5, rtol=0)
    bad = httpx.post(f"{server_url}/similarity", json={"inputs": {"source_sentence": "x", "sentences": []}},
                     timeout=60)
    assert bad.status_code == 422 and bad.json()["error_type"] == "validation", bad.text


def test_served_model_name_aliases_on_every_route(server_url, reference):
    """--served_model_name: listed by both model lists, accepted by V1/V2 paths, OpenAI and Cohere 'model'."""
    import cohere
    import openai

    listed = [m["id"] for m in httpx.get(f"{server_url}/openai/v1/models", timeout=30).json()["data"]]
    assert listed == [NAME, *ALIASES]
    assert httpx.get(f"{server_url}/v1/models", timeout=30).json()["models"] == [NAME, *ALIASES]
    expected = reference.encode(TEXTS)
    for name in ALIASES:
        response = httpx.post(f"{server_url}/v1/models/{name}:predict", json={"instances": TEXTS}, timeout=60)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(np.asarray(response.json()["predictions"]), expected, atol=1e-5, rtol=0)
        v2 = httpx.post(f"{server_url}/v2/models/{name}/infer", timeout=60, json={
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS}]})
        assert v2.status_code == 200, v2.text
        np.testing.assert_allclose(np.asarray(v2.json()["outputs"][0]["data"]).reshape(len(TEXTS), -1), expected,
                                   atol=1e-5, rtol=0)
        assert httpx.get(f"{server_url}/v2/models/{name}/ready", timeout=30).status_code == 200
        answer = openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0).embeddings.create(
            model=name, input=TEXTS)
        assert answer.model == name
        np.testing.assert_allclose(np.asarray([d.embedding for d in answer.data]), expected, atol=1e-5, rtol=0)
        cohere_answer = cohere.ClientV2(api_key="unused", base_url=server_url).embed(
            model=name, texts=TEXTS, input_type="search_query", embedding_types=["float"])
        np.testing.assert_allclose(np.asarray(cohere_answer.embeddings.float_), expected, atol=1e-5, rtol=0)
    unknown = httpx.post(f"{server_url}/v1/embeddings", json={"model": "not-served", "input": "x"}, timeout=30)
    assert unknown.status_code == 404 and "not-served" in unknown.text, unknown.text
    assert httpx.post(f"{server_url}/v1/models/not-served:predict", json={"instances": ["x"]},
                      timeout=30).status_code == 404


def _pieces(texts: list[str]) -> list[list[str]]:
    return [texts[i:i + CLIENT_BATCH] for i in range(0, len(texts), CLIENT_BATCH)]


def test_big_client_batches_are_split_in_request_order(server_url, reference):
    """Above --max_request_items the server splits the request instead of refusing it (TEI #378): the vectors are
    the pieces' sent one by one, in the request's order, on V1, OpenAI and TEI; above the bound it is a 400."""
    info = httpx.get(f"{server_url}/info", timeout=30).json()
    assert (info["max_client_batch_size"], info["auto_split_client_batches"],
            info["max_split_client_batch_size"]) == (CLIENT_BATCH, True, SPLIT_BOUND)
    texts = [f"{i} {SENTENCES[i % len(SENTENCES)]}" * (1 + i % 3) for i in range(SPLIT_BOUND - 1)]

    def v1_vectors(batch):
        response = httpx.post(f"{server_url}/v1/models/{NAME}:predict", json={"instances": batch}, timeout=120)
        assert response.status_code == 200, response.text
        return response.json()["predictions"]

    def openai_vectors(batch):
        response = httpx.post(f"{server_url}/v1/embeddings", json={"model": NAME, "input": batch}, timeout=120)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert [d["index"] for d in data] == list(range(len(batch)))
        return [d["embedding"] for d in data]

    def tei_vectors(batch):
        response = httpx.post(f"{server_url}/embed", json={"inputs": batch}, timeout=120)
        assert response.status_code == 200, response.text
        return response.json()

    for route in (v1_vectors, openai_vectors, tei_vectors):
        whole = np.asarray(route(texts))
        one_by_one = np.asarray([v for piece in _pieces(texts) for v in route(piece)])
        np.testing.assert_allclose(whole, one_by_one, atol=1e-6, rtol=0, err_msg=route.__name__)
        np.testing.assert_allclose(whole, reference.encode(texts), atol=1e-5, rtol=0, err_msg=route.__name__)
    over = httpx.post(f"{server_url}/v1/models/{NAME}:predict", json={"instances": ["x"] * (SPLIT_BOUND + 1)},
                      timeout=60)
    assert over.status_code == 400 and f"at most {SPLIT_BOUND}" in over.json()["error"], over.text


V2_TYPES = ("float", "int8", "uint8", "binary", "ubinary")


def _check_typed_tensors(outputs: dict, expected: np.ndarray) -> None:
    """outputs: tensor name -> (datatype, numpy array); each is quantize_embeddings of encode() (int8/uint8 with
    the documented calibration range [-1, 1], within one code of float rounding at a step)."""
    from sentence_transformers.util.quantization import quantize_embeddings

    assert list(outputs) == ["embedding", "embedding_int8", "embedding_uint8", "embedding_binary",
                             "embedding_ubinary"]
    assert [datatype for datatype, _ in outputs.values()] == ["FP32", "INT8", "UINT8", "INT8", "UINT8"]
    np.testing.assert_allclose(outputs["embedding"][1], expected, atol=1e-5, rtol=0)
    ranges = np.array([[-1.0] * expected.shape[1], [1.0] * expected.shape[1]])
    for kind in ("int8", "uint8"):
        codes = outputs[f"embedding_{kind}"][1]
        assert codes.shape == expected.shape
        reference_codes = quantize_embeddings(expected, precision=kind, ranges=ranges)
        assert np.abs(codes.astype(int) - reference_codes.astype(int)).max() <= 1, kind
    for kind in ("binary", "ubinary"):
        packed = outputs[f"embedding_{kind}"][1]
        assert packed.shape == (len(expected), expected.shape[1] // 8)
        np.testing.assert_array_equal(packed, quantize_embeddings(expected, precision=kind))


def test_v2_embedding_types_as_typed_tensors_over_rest_and_grpc(server, reference):
    """V2's `embedding_types` parameter (Cohere's names, comma-separated: V2 parameters hold no lists): INT8 /
    UINT8 tensors, binary / ubinary packed 8 signs to a byte, over V2 REST and V2 gRPC (tritonclient)."""
    expected = reference.encode(TEXTS, prompt_name="document")
    parameters = {"embedding_types": ",".join(V2_TYPES), "prompt_name": "document"}
    response = httpx.post(f"{server.url}/v2/models/{NAME}/infer", timeout=60, json={
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS}],
        "parameters": parameters})
    assert response.status_code == 200, response.text
    rest = {o["name"]: (o["datatype"], np.asarray(o["data"]).reshape(o["shape"]))
            for o in response.json()["outputs"]}
    _check_typed_tensors(rest, expected)

    answer = grpc_embedding_types.call(server.grpc_target, ALIASES[0], TEXTS, parameters)
    grpc = {name: (datatype, np.asarray(values, dtype=dtype))
            for name, (datatype, dtype, values) in answer["outputs"].items()}
    assert {name: str(array.dtype) for name, (_, array) in grpc.items()} == {
        "embedding": "float32", "embedding_int8": "int8", "embedding_uint8": "uint8", "embedding_binary": "int8",
        "embedding_ubinary": "uint8"}
    _check_typed_tensors(grpc, expected)


def test_v2_embedding_types_refused_where_they_do_not_apply(server_url):
    def v2(types):
        return httpx.post(f"{server_url}/v2/models/{NAME}/infer", timeout=60, json={
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}],
            "parameters": {"embedding_types": types}})

    for bad in ("base64", "int4", "", "float,,int8"):
        response = v2(bad)
        assert response.status_code == 400 and "embedding_types" in response.json()["error"], (bad, response.text)
    v1 = httpx.post(f"{server_url}/v1/models/{NAME}:predict",
                    json={"instances": ["x"], "parameters": {"embedding_types": "int8"}}, timeout=60)
    assert v1.status_code == 400 and "V2 parameter" in v1.json()["error"], v1.text


def test_info_describes_prompts_dimensions_and_output_types(server_url, reference):
    info = httpx.get(f"{server_url}/info", timeout=30).json()
    assert info["embedding_dimension"] == reference.get_embedding_dimension() == 16
    assert info["normalized"] is True
    assert info["prompts"] == PROMPTS and info["default_prompt_name"] == "query"
    assert info["embedding_types"] == ["float", "int8", "uint8", "binary", "ubinary", "base64"]
    assert info["v2_embedding_types"] == list(V2_TYPES)
