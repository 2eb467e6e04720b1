"""The shared task logic on its own: detection, tokenizer limits, pooling config, post-processing, batching."""

import asyncio
import json

import numpy as np
import pytest
from hfserve.engine.batcher import DynamicBatcher
from hfserve.engine.encoder import EncoderEngine
from hfserve.tasks import Task
from hfserve.tasks.detect import TaskDetectionError, infer_task, task_from_architectures
from hfserve.tasks.embedding import read_pooling_config
from hfserve.tasks.generation import generation_params
from hfserve.tasks.handlers import make_handler
from hfserve.tasks.params import InvalidRequest, RequestParams
from hfserve.tasks.tokenization import (
    TextEncoder,
    TokenizerOptions,
    effective_max_length,
    load_tokenizer,
)


@pytest.mark.parametrize("architecture,task", [
    ("BertForSequenceClassification", Task.SEQUENCE_CLASSIFICATION),
    ("DistilBertForTokenClassification", Task.TOKEN_CLASSIFICATION),
    ("RobertaForMaskedLM", Task.FILL_MASK),
    ("LlamaForCausalLM", Task.TEXT_GENERATION),
    ("GPT2LMHeadModel", Task.TEXT_GENERATION),
    ("T5ForConditionalGeneration", Task.TEXT2TEXT_GENERATION),
    ("MPNetModel", Task.TEXT_EMBEDDING),
])
def test_task_from_architecture(architecture, task):
    assert task_from_architectures([architecture]) == task


def test_detection_errors_name_the_fix(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Mystery"]}))
    with pytest.raises(TaskDetectionError, match="pass --task"):
        infer_task(tmp_path)
    with pytest.raises(TaskDetectionError, match="unknown task"):
        infer_task(tmp_path, "summarise")
    assert infer_task(tmp_path, "fill_mask") == Task.FILL_MASK
    with pytest.raises(TaskDetectionError, match="config.json"):
        infer_task(tmp_path / "missing")


def test_packaged_minilm_is_a_normalised_mean_pooled_embedding_model(minilm_dir):
    assert infer_task(minilm_dir) == Task.TEXT_EMBEDDING
    pooling = read_pooling_config(minilm_dir)
    assert (pooling.mode, pooling.normalize) == ("mean", True)
    tokenizer = load_tokenizer(minilm_dir, TokenizerOptions())
    assert effective_max_length(tokenizer, minilm_dir, None) == 256  # sentence-transformers' max_seq_length
    assert effective_max_length(tokenizer, minilm_dir, 64) == 64
    assert effective_max_length(tokenizer, minilm_dir, 100_000) == 256


def test_truncation_and_lower_case_options(minilm_dir):
    names = ("input_ids", "attention_mask", "token_type_ids")
    tokenizer = load_tokenizer(minilm_dir, TokenizerOptions())
    encoder = TextEncoder(tokenizer, 10, TokenizerOptions(), names)
    long, short = encoder.encode(["word " * 100, "Hello"])
    assert len(long) == 10 and long.input_ids[-1] == tokenizer.sep_token_id
    padded = encoder.pad([long, short])
    assert padded["input_ids"].shape == (2, 10) and padded["input_ids"].dtype == np.int64
    assert padded["attention_mask"][1].tolist() == [1, 1, 1] + [0] * 7
    bare = TextEncoder(tokenizer, 10, TokenizerOptions(add_special_tokens=False), names).encode(["Hello"])[0]
    assert tokenizer.cls_token_id not in bare.input_ids
    cased_options = TokenizerOptions(lower_case=False)
    cased = TextEncoder(load_tokenizer(minilm_dir, cased_options), 10, cased_options, names).encode(["Hello"])[0]
    assert cased.input_ids != short.input_ids  # "Hello" is not in the uncased vocabulary as is


def test_token_classification_groups_b_and_i_tokens(tiny_models):
    model_dir = tiny_models("token_classification")
    tokenizer = load_tokenizer(model_dir, TokenizerOptions())
    handler = make_handler(Task.TOKEN_CLASSIFICATION, tokenizer, model_dir)
    label_ids = {v: k for k, v in handler.id2label.items()}
    text = "alice smith went to paris"
    encoded = TextEncoder(tokenizer, 32, TokenizerOptions(), ("input_ids",)).encode([text], with_offsets=True)[0]
    word_labels = {"alice": "B-PER", "smith": "I-PER", "paris": "B-LOC"}
    logits = np.full((len(encoded), len(label_ids)), -5.0)
    for position, (start, end) in enumerate(encoded.offsets):
        word = next((w for w in text.split() if text.find(w) <= start < text.find(w) + len(w)), None)
        label = word_labels.get(word, "O") if end > start else "O"
        if label.startswith("B-") and start != text.find(word):  # later pieces of a word continue it
            label = "I-" + label[2:]
        logits[position, label_ids[label]] = 5.0
    entities = handler.result({"logits": logits}, encoded, text, RequestParams())
    assert [(e["entity_group"], e["word"]) for e in entities] == [("PER", "alice smith"), ("LOC", "paris")]


def test_request_parameters_are_validated():
    assert RequestParams.parse({"top_k": 3, "normalize": "false"}) == RequestParams(normalize=False, top_k=3)
    for bad in ({"top_k": 0}, {"top_k": "3"}, {"normalize": 1}, "x"):
        with pytest.raises(InvalidRequest):
            RequestParams.parse(bad)
    assert generation_params({"max_tokens": 5, "stop": "\n"}).stop == ("\n",)
    with pytest.raises(InvalidRequest):
        generation_params({"stop": ["a"] * 5})


def test_batched_forward_matches_one_by_one(minilm_dir):
    engine = EncoderEngine.load(minilm_dir)
    encoder = TextEncoder(load_tokenizer(minilm_dir, TokenizerOptions()), 256, TokenizerOptions(), engine.input_names)
    texts = ["short", "a somewhat longer sentence about the weather", "x " * 40]
    encoded = encoder.encode(texts)
    ran: list[int] = []

    def run_batch(items):
        ran.append(len(items))
        out = engine.forward(encoder.pad(items))["embeddings"]
        return list(out)

    async def submit_all():
        batcher = DynamicBatcher(run_batch, "unit", max_batch_size=8, max_batch_delay_ms=20)
        results = await asyncio.gather(*(batcher.submit([e]) for e in encoded))
        batcher.close()
        return [r[0] for r in results]

    together = asyncio.run(submit_all())
    assert max(ran) > 1
    for vector, item in zip(together, encoded):
        alone = engine.forward(encoder.pad([item]))["embeddings"][0]
        np.testing.assert_allclose(vector, alone, atol=1e-5)


@pytest.mark.parametrize("kind", ["token_classification", "fill_mask"])
def test_rust_fast_path_tokenizes_exactly_like_transformers(tiny_models, minilm_dir, kind):
    texts = ["Hello World, a test!", "word " * 600, "", "Ünïcödé çafé [MASK] naïve", "alice smith went to paris"]
    names = ("input_ids", "attention_mask", "token_type_ids")
    for model_dir in (minilm_dir, tiny_models(kind)):
        for options in (TokenizerOptions(), TokenizerOptions(add_special_tokens=False),
                        TokenizerOptions(lower_case=False)):
            tokenizer = load_tokenizer(model_dir, options)
            fast = TextEncoder(tokenizer, 64, options, names)
            assert fast._backend is not None
            slow = TextEncoder(tokenizer, 64, options, names)
            slow._backend = None
            encoded_fast, encoded_slow = fast.encode(texts, True), slow.encode(texts, True)
            assert len(encoded_fast) == len(encoded_slow) == len(texts)
            for a, b in zip(encoded_fast, encoded_slow):
                assert (a.input_ids, a.token_type_ids) == (b.input_ids, b.token_type_ids)
                assert [tuple(o) for o in a.offsets] == b.offsets
