"""Rerank tokenizes its query once per request, not once per document (security review H4: a 1 MiB query with
64 one-word documents was 64 MiB of tokenization), and still scores each pair as transformers does: the real
tokenizer's Rust backend is wrapped to record what it is given, the model is the tiny cross-encoder."""

import asyncio

import numpy as np
import pytest
import torch
from hfserve.config import ModelSettings
from hfserve.core.encoder_service import EncoderService
from hfserve.huggingface.in_process_backend import InProcessBackend
from hfserve.tasks import Task
from transformers import AutoModelForSequenceClassification, AutoTokenizer


class RecordingBackend:
    """A tokenizers.Tokenizer that records every text it is asked to encode, then encodes it."""

    def __init__(self, real):
        self.real = real
        self.inputs = []

    def encode(self, sequence, *args, **kwargs):
        self.inputs.append(sequence)
        return self.real.encode(sequence, *args, **kwargs)

    def encode_batch(self, inputs, *args, **kwargs):
        self.inputs.extend(inputs)
        return self.real.encode_batch(inputs, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


def times_tokenized(backends, text: str) -> int:
    """How often `text`, or a cut of it (its beginning, 16 characters or more), was given to the tokenizer, alone
    or in a pair."""
    def of_text(item) -> bool:
        if isinstance(item, (tuple, list)):
            return any(of_text(part) for part in item)
        return item == text or (len(item) >= 16 and text.startswith(item))

    return sum(1 for b in backends for item in b.inputs if of_text(item))


@pytest.fixture(scope="module")
def reranker(tiny_models):
    model_dir = tiny_models("rerank")
    settings = ModelSettings(model_name="r", model_dir=model_dir, task=Task.RERANK)
    service = EncoderService(settings, InProcessBackend(settings, dtype="float32", device="cpu"))
    service.load()
    yield service
    service.stop()


def recording(service: EncoderService) -> list[RecordingBackend]:
    encoder = service.text_encoder
    for truncate in (True, False):
        encoder.backend(truncate, "right")
    encoder._backends = {key: RecordingBackend(getattr(b, "real", b)) for key, b in encoder._backends.items()}
    return list(encoder._backends.values())


@pytest.mark.parametrize("query", ["where is the cat", "the cat sat " * 60, "the cat sat " * 400])
def test_the_query_is_tokenized_once_and_pairs_score_as_transformers(reranker, tiny_models, query):
    """Short, truncated, and cut by characters before tokenizing (the third)."""
    documents = ["the cat sat on the mat", "a dog", "berlin is a city in germany " * 10] + ["x"] * 61
    backends = recording(reranker)
    scores, tokens = asyncio.run(reranker.rerank(query, documents, raw_scores=True))
    assert times_tokenized(backends, query) == 1
    assert times_tokenized(backends, "a dog") == 1
    assert_scores_as_transformers(reranker, tiny_models, query, documents, scores, tokens)


def test_a_megabyte_query_costs_one_cut_tokenization(reranker, tiny_models):
    """The attack case (a 1 MiB query, 64 one-letter documents) took minutes and 9 GB of RSS: each pair copied
    the query's overflow. Now the query is cut before it is tokenized, once."""
    query, documents = "word " * 200_000, ["a"] * 64
    backends = recording(reranker)
    scores, tokens = asyncio.run(reranker.rerank(query, documents, raw_scores=True))
    assert times_tokenized(backends, query) == 1
    assert sum(len(item) for b in backends for item in b.inputs if isinstance(item, str)) < 20_000 + 64
    # The same scores as the pipeline's pairs of a query long enough to be truncated the same way.
    assert_scores_as_transformers(reranker, tiny_models, query[:20_000], documents, scores, tokens)


def assert_scores_as_transformers(reranker, tiny_models, query, documents, scores, tokens):
    model_dir = tiny_models("rerank")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    batch = tokenizer([query] * len(documents), documents, truncation=True,
                      max_length=reranker.text_encoder.max_length, padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**batch).logits[:, 0].numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=0)
    assert tokens == int(batch["attention_mask"].sum())


def test_v1_pairs_with_one_query_are_tokenized_once_too(reranker):
    """V1 and /predict send (query, document) pairs as instances: equal first texts share one tokenization."""
    backends = recording(reranker)
    query = "what does the fox say"
    encoded = asyncio.run(reranker.encode([(query, d) for d in ("one", "two", "three")]))
    assert times_tokenized(backends, query) == 1
    direct = reranker.text_encoder.tokenizer([query] * 3, ["one", "two", "three"], truncation=True,
                                             max_length=reranker.text_encoder.max_length)
    assert [e.input_ids for e in encoded.items] == direct["input_ids"]
    assert [e.token_type_ids for e in encoded.items] == direct["token_type_ids"]
