"""Prompts and Matryoshka dimensions, as sentence-transformers' encode() applies them (tasks/prompts.py,
tasks/handlers.py): per-request choice, 4xx naming what the checkpoint has, and truncate-then-normalize."""

import json

import numpy as np
import pytest
from hfserve.errors import InvalidRequest
from hfserve.tasks.handlers import EmbeddingHandler
from hfserve.tasks.params import RequestParams
from hfserve.tasks.prompts import Prompts, apply_prompt


def write_config(path, **config):
    (path / "config_sentence_transformers.json").write_text(json.dumps(config))
    return path


def test_the_checkpoint_default_applies_unless_the_request_chooses(tmp_path):
    prompts = Prompts.read(write_config(tmp_path, prompts={"query": "query: ", "document": "passage: "},
                                        default_prompt_name="query"))
    assert prompts.choose() == "query: "
    assert prompts.choose(prompt_name="document") == "passage: "
    assert prompts.choose(prompt_name="document", prompt="mine: ") == "mine: "  # free text wins, as in encode()
    assert prompts.choose(input_type="search_document") == "passage: "
    assert prompts.choose(input_type="clustering") == "query: "  # no clustering prompt: the default stays
    assert apply_prompt(["a", "b"], "query: ") == ["query: a", "query: b"]


def test_an_unknown_prompt_name_is_a_4xx_naming_the_ones_there_are(tmp_path):
    prompts = Prompts.read(write_config(tmp_path, prompts={"query": "q: ", "doc": "d: "}))
    assert prompts.choose() == ""
    with pytest.raises(InvalidRequest, match="'doc', 'query'"):
        prompts.choose(prompt_name="passage")
    with pytest.raises(InvalidRequest, match="it has none"):
        Prompts().choose(prompt_name="query")
    with pytest.raises(InvalidRequest, match="input_type"):
        prompts.choose(input_type="poetry")


def test_the_server_default_must_exist_and_free_text_default_wins(tmp_path):
    write_config(tmp_path, prompts={"query": "q: "})
    with pytest.raises(ValueError, match="--default_prompt_name 'passage'"):
        Prompts.read(tmp_path, default_name="passage")
    assert Prompts.read(tmp_path, default_name="query").choose() == "q: "
    assert Prompts.read(tmp_path, default_name="query", default_text="instruct: ").choose() == "instruct: "


def test_request_parameters_are_checked():
    params = RequestParams.parse({"prompt_name": "query", "dimensions": 8, "input_type": "search_query"})
    assert (params.prompt_name, params.dimensions, params.input_type) == ("query", 8, "search_query")
    for bad in ({"dimensions": 0}, {"dimensions": True}, {"dimensions": 2.5}, {"prompt_name": 3}):
        with pytest.raises(InvalidRequest):
            RequestParams.parse(bad)


def test_dimensions_cut_then_normalize(minilm_dir):
    from hfserve.tasks.tokenization import TokenizerOptions, load_tokenizer

    handler = EmbeddingHandler(load_tokenizer(minilm_dir, TokenizerOptions()), minilm_dir, {})
    raw = np.arange(1, 385, dtype=np.float32)
    cut = handler.vector({"embeddings": raw}, RequestParams(dimensions=4))
    np.testing.assert_allclose(cut, raw[:4] / np.linalg.norm(raw[:4]), rtol=1e-6)  # MiniLM normalizes
    raw_cut = handler.vector({"embeddings": raw}, RequestParams(dimensions=4, normalize=False))
    np.testing.assert_array_equal(raw_cut, raw[:4])
    with pytest.raises(InvalidRequest, match="385.*384"):
        handler.vector({"embeddings": raw}, RequestParams(dimensions=385))


def test_v2_embedding_types_parse_and_typed_tensors():
    """V2's embedding_types: a list or comma-separated names (gRPC parameters hold no lists), base64 refused; the
    tensors are quantize()'s values with V2 datatypes, binary packed to ceil(width / 8) bytes."""
    from hfserve.serving.v2_tensors import embedding_outputs, to_infer_output
    from hfserve.tasks.embedding import quantize

    assert RequestParams.parse({"embedding_types": "int8, ubinary,int8"}).embedding_types == ("int8", "ubinary")
    assert RequestParams.parse({"embedding_types": ["float"]}).embedding_types == ("float",)
    for bad in ("base64", "", [], ["int4"], 3, "int8,,float"):
        with pytest.raises(InvalidRequest, match="embedding_types"):
            RequestParams.parse({"embedding_types": bad})
    vectors = np.random.default_rng(0).uniform(-1, 1, size=(3, 12)).astype(np.float32)
    tensors = embedding_outputs(vectors.tolist(), ("float", "int8", "uint8", "binary", "ubinary"))
    assert [(t.name, t.datatype, t.shape) for t in tensors] == [
        ("embedding", "FP32", [3, 12]), ("embedding_int8", "INT8", [3, 12]), ("embedding_uint8", "UINT8", [3, 12]),
        ("embedding_binary", "INT8", [3, 2]), ("embedding_ubinary", "UINT8", [3, 2])]
    dtypes = {"int8": "int8", "uint8": "uint8", "binary": "int8", "ubinary": "uint8"}
    for tensor, kind in zip(tensors[1:], dtypes):
        array = to_infer_output(tensor).as_numpy()
        assert str(array.dtype) == dtypes[kind], kind
        np.testing.assert_array_equal(array, np.asarray(quantize(vectors, kind)))
