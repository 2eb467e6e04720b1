"""sequence_classification, token_classification and fill_mask on both runtimes against transformers' own
pipelines, run in the test process on the same checkpoints (they share no code with our handlers or engine).

Our format differs from the pipelines' in two places, mapped here, not in the product:
- token_classification `word` is the text's own slice text[start:end]; the pipeline decodes tokens
  (lower-cased by an uncased tokenizer), so only offsets, groups and scores are compared;
- fill_mask `token_str` has no surrounding spaces, and with several masks each `sequence` is the text with that
  one mask filled and special tokens dropped; the pipeline keeps [CLS]/[SEP]/[MASK] in that case.
"""

from functools import cache

import httpx
import pytest
from transformers import pipeline

from devkit.tiny_models import SENTENCES

from .conftest import RUNTIMES, SLOW_START, predict

pytestmark = SLOW_START

LONG = " ".join(SENTENCES)  # far beyond the tiny models' 64 positions
TEXTS = ["Alice moved from Paris to Berlin last year.", "John Smith lives in New York with his family.",
         "Mary  works at a hospital in\n Berlin.", "the movie was great", "x", LONG]


@cache
def reference(task: str, path: str, **options):
    return pipeline(task, model=path, tokenizer=path, device="cpu", **options)


def assert_truncation_is_exercised(pipe):
    assert len(pipe.tokenizer(LONG)["input_ids"]) > pipe.model.config.max_position_embeddings


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", ["sentiment", "topics"])
def test_sequence_classification_equals_the_pipeline(served, model_dir, runtime, name):
    """sentiment: softmax over two labels (probabilities per request); topics: multi-label, a sigmoid per label,
    probabilities on by the --return_probabilities flag."""
    pipe = reference("text-classification", str(model_dir(name)), top_k=None)
    assert_truncation_is_exercised(pipe)
    expected = pipe(TEXTS, truncation=True)
    server = served(runtime, name)
    plain = predict(server, TEXTS)
    detailed = predict(server, TEXTS, return_probabilities=True) if name == "sentiment" else plain
    for ours, ours_detailed, ranked in zip(plain, detailed, expected):
        assert ours["label"] == ranked[0]["label"]
        assert ours["score"] == pytest.approx(ranked[0]["score"], abs=1e-5)
        assert list(ours_detailed["probabilities"]) == list(pipe.model.config.id2label.values())
        for candidate in ranked:
            assert ours_detailed["probabilities"][candidate["label"]] == pytest.approx(candidate["score"], abs=1e-5)
    if name == "sentiment":
        assert "probabilities" not in plain[0]
    else:
        assert sum(plain[0]["probabilities"].values()) > 1.2  # independent sigmoids, not a distribution


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", ["sentiment", "topics"])
def test_tei_predict_and_inference_api_scores_equal_the_pipeline(served, model_dir, runtime, name):
    """The TEI route and the Inference API route score labels as V1 does: the checkpoint's own activation."""
    pipe = reference("text-classification", str(model_dir(name)), top_k=None)
    texts = TEXTS[:4]
    expected = pipe(texts, truncation=True)
    server = served(runtime, name)
    tei = httpx.post(f"{server.url}/predict", json={"inputs": [[t] for t in texts]}, timeout=120)
    api = httpx.post(f"{server.url}/", json={"inputs": texts}, timeout=120)
    assert tei.status_code == 200 and api.status_code == 200, (tei.text, api.text)
    for answers in (tei.json(), api.json()):
        assert len(answers) == len(expected)
        for ours, ranked in zip(answers, expected):
            assert [a["label"] for a in ours] == [r["label"] for r in ranked]
            assert [a["score"] for a in ours] == pytest.approx([r["score"] for r in ranked], abs=1e-5)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_token_classification_equals_the_simple_aggregation_pipeline(served, model_dir, runtime):
    pipe = reference("token-classification", str(model_dir("ner")), aggregation_strategy="simple")
    assert_truncation_is_exercised(pipe)
    got = predict(served(runtime, "ner"), TEXTS)
    compared = 0
    for text, ours, theirs in zip(TEXTS, got, pipe(TEXTS)):
        assert [(e["entity_group"], e["start"], e["end"]) for e in ours] == \
            [(e["entity_group"], e["start"], e["end"]) for e in theirs], text
        for entity, expected in zip(ours, theirs):
            assert entity["score"] == pytest.approx(float(expected["score"]), abs=1e-5)
            assert entity["word"] == text[entity["start"]:entity["end"]]
            assert entity["word"].lower().replace(" ", "") == expected["word"].replace("##", "").replace(" ", "")
        compared += len(ours)
    assert compared >= 10  # random tiny weights tag most tokens; an empty answer would compare nothing


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_fill_mask_equals_the_pipeline(served, model_dir, runtime):
    pipe = reference("fill-mask", str(model_dir("mask")))
    specials = set(pipe.tokenizer.all_special_tokens)
    server = served(runtime, "mask")
    one_mask = ["the cat sat on the [MASK] .", "[MASK] is the capital of France"]
    for ours, theirs in zip(predict(server, one_mask, top_k=4), pipe(one_mask, top_k=4)):
        assert [c["token"] for c in ours] == [c["token"] for c in theirs]
        for candidate, expected in zip(ours, theirs):
            assert candidate["score"] == pytest.approx(expected["score"], abs=1e-5)
            assert candidate["token_str"] == expected["token_str"].strip()
            assert candidate["sequence"] == expected["sequence"]
    two_masks = "[MASK] cat sat on the [MASK] ."
    ours, theirs = predict(server, [two_masks], top_k=3)[0], pipe(two_masks, top_k=3)
    assert len(ours) == len(theirs) == 2
    for per_mask, expected_per_mask in zip(ours, theirs):
        assert [c["token"] for c in per_mask] == [c["token"] for c in expected_per_mask]
        for candidate, expected in zip(per_mask, expected_per_mask):
            assert candidate["score"] == pytest.approx(expected["score"], abs=1e-5)
            kept = expected["sequence"]
            for special in specials:
                kept = kept.replace(special, "")
            assert candidate["sequence"].replace(" ", "") == kept.replace(" ", "")
