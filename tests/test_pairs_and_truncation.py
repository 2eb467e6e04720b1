"""Task logic behind reranking and truncation control (no server): rerank detection, text-pair tokenization and
truncation in both directions against transformers' own tokenizer, the too-long error, request parameters."""

import json

import pytest
from hfserve.tasks import Task
from hfserve.tasks.detect import infer_task
from hfserve.tasks.handlers import make_handler
from hfserve.tasks.params import InputTooLong, InvalidRequest, RequestParams
from hfserve.tasks.tokenization import TextEncoder, TokenizerOptions, load_tokenizer
from transformers import AutoTokenizer

NAMES = ("input_ids", "attention_mask", "token_type_ids")
PAIRS = [("where is paris", "paris is the capital of france " * 12), ("short", "pair"),
         ("a query that is rather long " * 8, "a document that is longer still " * 10)]


def test_cross_encoders_are_detected_as_rerank(tiny_models, tmp_path):
    assert infer_task(tiny_models("rerank")) == Task.RERANK
    assert infer_task(tiny_models("sequence_classification")) == Task.SEQUENCE_CLASSIFICATION
    config = {"architectures": ["XLMRobertaForSequenceClassification"], "id2label": {"0": "LABEL_0"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert infer_task(tmp_path) == Task.RERANK  # one logit: bge-reranker style, no sentence-transformers marker
    assert infer_task(tmp_path, "sequence_classification") == Task.SEQUENCE_CLASSIFICATION


def test_rerank_needs_a_single_logit(tiny_models):
    model_dir = tiny_models("sequence_classification")
    with pytest.raises(ValueError, match="one output logit"):
        make_handler(Task.RERANK, load_tokenizer(model_dir, TokenizerOptions()), model_dir)


@pytest.mark.parametrize("direction", ["right", "left"])
@pytest.mark.parametrize("fast", [True, False])
def test_pairs_truncate_like_transformers(tiny_models, direction, fast):
    model_dir = tiny_models("rerank")
    encoder = TextEncoder(load_tokenizer(model_dir, TokenizerOptions()), 32, TokenizerOptions(), NAMES)
    if not fast:
        encoder._backend = None  # transformers' __call__ path
    reference = AutoTokenizer.from_pretrained(model_dir, truncation_side=direction)
    for (query, document), encoded in zip(PAIRS, encoder.encode(PAIRS, direction=direction)):
        expected = reference(query, document, truncation=True, max_length=32)
        assert encoded.input_ids == expected["input_ids"]
        assert encoded.token_type_ids == expected["token_type_ids"]
        assert 1 in encoded.token_type_ids  # the document's tokens are marked as the second segment


@pytest.mark.parametrize("fast", [True, False])
def test_truncation_off_refuses_naming_the_limit(tiny_models, fast):
    model_dir = tiny_models("text_embedding")
    encoder = TextEncoder(load_tokenizer(model_dir, TokenizerOptions()), 16, TokenizerOptions(), NAMES)
    if not fast:
        encoder._backend = None
    assert len(encoder.encode(["word " * 40])[0]) == 16
    assert len(encoder.encode(["a few words"], truncate=False)[0]) < 16
    with pytest.raises(InputTooLong, match=r"input 1 has \d+ tokens, more than this model's limit of 16 tokens"):
        encoder.encode(["fine", "word " * 40], truncate=False)


def test_request_parameters():
    params = RequestParams.parse({"truncate": "false", "truncation_direction": "Left", "raw_scores": True})
    assert (params.truncate, params.truncation_direction, params.raw_scores) == (False, "left", True)
    assert RequestParams.parse({}).truncate is None
    with pytest.raises(InvalidRequest, match="truncation_direction"):
        RequestParams.parse({"truncation_direction": "middle"})
    with pytest.raises(InvalidRequest, match="truncate"):
        RequestParams.parse({"truncate": "sometimes"})
