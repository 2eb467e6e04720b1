"""Fill-mask does bounded work (security review H1): the model call returns the top-k candidates at the mask
tokens, never [T, vocab] logits per text; the projection onto the vocabulary runs on the masks' hidden states
only; masks per text and candidates per request are capped with an error naming the cap; and the answers equal
transformers' own fill-mask pipeline, with the torch and the ONNX engine."""

import asyncio
import shutil
from functools import cache

import numpy as np
import pytest
import torch
from hfserve.config import ModelSettings
from hfserve.core.encoder_service import EncoderService
from hfserve.engine.encoder import MASK_OUTPUTS, EncoderEngine
from hfserve.engine.loading import load_encoder_engine
from hfserve.engine.onnx_engine import fill_mask_from_logits
from hfserve.errors import InputTooLong
from hfserve.huggingface.in_process_backend import InProcessBackend
from hfserve.tasks import Task
from hfserve.tasks.params import MAX_TOP_K
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, pipeline

ONE_MASK = ["the cat sat on the [MASK] .", "[MASK] is the capital of France", "alice [MASK] to berlin"]
TWO_MASKS = "[MASK] cat sat on the [MASK] ."


def service_for(model_dir, engine: str = "torch", onnx_cache=None, **limits) -> EncoderService:
    settings = ModelSettings(model_name="m", model_dir=model_dir, task=Task.FILL_MASK, **limits)
    service = EncoderService(settings, InProcessBackend(settings, dtype="float32", device="cpu", engine=engine,
                                                        onnx_cache_dir=onnx_cache))
    service.load()
    return service


@cache
def reference(path: str):
    return pipeline("fill-mask", model=path, tokenizer=path, device="cpu")


@pytest.fixture(scope="module")
def wide_vocab(tiny_models, tmp_path_factory):
    """The tiny fill-mask tokenizer over a BERT with bert-base's vocabulary size (30,522): [T, vocab] outputs
    would be 300 times the size of the candidates."""
    folder = tmp_path_factory.mktemp("wide-vocab")
    for item in tiny_models("fill_mask").iterdir():
        if "token" in item.name or item.name == "vocab.txt":
            shutil.copy(item, folder / item.name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=128, pad_token_id=0)
    BertForMaskedLM(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_answers_equal_the_pipeline(tiny_models, onnx_cache, engine):
    model_dir = tiny_models("fill_mask")
    pipe = reference(str(model_dir))
    service = service_for(model_dir, engine, onnx_cache)
    try:
        ours, _ = asyncio.run(service.fill_mask(ONE_MASK, top_k=4))
        for per_text, expected in zip(ours, pipe(ONE_MASK, top_k=4)):
            assert [c["token"] for c in per_text] == [c["token"] for c in expected]
            for candidate, theirs in zip(per_text, expected):
                assert candidate["score"] == pytest.approx(theirs["score"], abs=1e-5)
                assert candidate["token_str"] == theirs["token_str"].strip()
                assert candidate["sequence"] == theirs["sequence"]
        (both,), _ = asyncio.run(service.fill_mask([TWO_MASKS], top_k=3))
        expected = pipe(TWO_MASKS, top_k=3)
        assert len(both) == len(expected) == 2
        for per_mask, theirs in zip(both, expected):
            assert [c["token"] for c in per_mask] == [c["token"] for c in theirs]
            assert [c["score"] for c in per_mask] == pytest.approx([c["score"] for c in theirs], abs=1e-5)
    finally:
        service.stop()


def test_the_vocabulary_projection_sees_only_the_masks(wide_vocab):
    engine = EncoderEngine.load(wide_vocab, dtype="float32", device="cpu")
    tokenizer = AutoTokenizer.from_pretrained(str(wide_vocab))
    seen = []
    handle = engine.model.get_output_embeddings().register_forward_hook(
        lambda module, args, output: seen.append((tuple(args[0].shape), tuple(output.shape))))
    texts = ["word " * 30 + "[MASK]", "[MASK] and [MASK] " + "word " * 20, "no mask at all"]
    batch = tokenizer(texts, padding=True, return_tensors="np")
    try:
        outputs = engine.forward(dict(batch))
    finally:
        handle.remove()
    rows, length = batch["input_ids"].shape
    assert seen == [((3, 32), (3, 30522))]  # three masks in the batch: three rows projected, not rows x length
    candidates = min(MAX_TOP_K, 30522)
    assert set(outputs) == set(MASK_OUTPUTS)
    for name in MASK_OUTPUTS:
        assert outputs[name].shape == (rows, length, candidates) and outputs[name].dtype == np.float32
    # The same numbers as the full logits give (what the ONNX graph computes), zeros away from the masks.
    with torch.inference_mode():
        logits = engine.model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    full = fill_mask_from_logits(logits, batch["input_ids"], tokenizer.mask_token_id, candidates)
    np.testing.assert_allclose(outputs["mask_scores"], full["mask_scores"], atol=1e-6, rtol=0)
    masks = batch["input_ids"] == tokenizer.mask_token_id
    np.testing.assert_array_equal(outputs["mask_ids"][masks][:, :5], full["mask_ids"][masks][:, :5])
    assert not outputs["mask_scores"][~masks].any()


def test_a_request_holds_candidates_not_vocabulary_logits(wide_vocab):
    """One mask in each of 64 texts of 53 tokens: the backend's rows for the request hold at most
    rows x length x candidates x 2 floats (the old [T, vocab] logits were 64 x 53 x 30,522 x 4 B = 414 MB)."""
    service = service_for(wide_vocab)
    try:
        texts = ["the " * 50 + "[MASK]"] * 64
        encoded = asyncio.run(service.encode(texts))
        forward = asyncio.run(service.run(encoded))
        arrays = {id(a.base if a.base is not None else a): (a.base if a.base is not None else a)
                  for row in forward.rows for a in row.values()}
        held = sum(a.nbytes for a in arrays.values())
        longest = max(len(e) for e in encoded.items)
        assert held <= 64 * longest * MAX_TOP_K * 4 * 2
        assert held * 100 < 64 * longest * 30522 * 4
        answers = asyncio.run(service.results(encoded, forward.rows))
        assert len(answers) == 64 and all(len(a) == 5 for a in answers)
    finally:
        service.stop()


def test_masks_per_text_and_candidates_per_request_are_capped(tiny_models):
    service = service_for(tiny_models("fill_mask"), max_masks=2, max_fill_mask_candidates=12)
    try:
        with pytest.raises(InputTooLong, match=r"instance 1 has 3 \[MASK\].*at most 2 per text \(--max_masks\)"):
            asyncio.run(service.fill_mask(["a [MASK]", "[MASK] [MASK] [MASK]"]))
        with pytest.raises(InputTooLong, match=r"at most 12 per request \(--max_fill_mask_candidates\)"):
            asyncio.run(service.fill_mask(["[MASK] and [MASK]", "a [MASK]"], top_k=5))  # 3 masks x 5 = 15
        answers, _ = asyncio.run(service.fill_mask(["[MASK] and [MASK]", "a [MASK]"], top_k=4))  # 12: served
        assert [len(c) for c in answers[0]] == [4, 4] and len(answers[1]) == 4
    finally:
        service.stop()


def test_onnx_graph_gives_the_torch_engines_candidates(tiny_models, onnx_cache):
    model_dir = tiny_models("fill_mask")
    torch_engine = EncoderEngine.load(model_dir, dtype="float32", device="cpu")
    onnx_engine = load_encoder_engine(model_dir, engine="onnx", device="cpu", onnx_cache_dir=onnx_cache)
    assert not onnx_engine.from_logits  # the exported graph computes the top-k itself
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    batch = dict(tokenizer([*ONE_MASK, TWO_MASKS, "none here"], padding=True, return_tensors="np"))
    expected, actual = torch_engine.forward(batch), onnx_engine.forward(batch)
    assert set(actual) == set(expected) == set(MASK_OUTPUTS)
    np.testing.assert_allclose(actual["mask_scores"], expected["mask_scores"], atol=1e-5, rtol=0)
    masks = batch["input_ids"] == tokenizer.mask_token_id
    np.testing.assert_array_equal(actual["mask_ids"][masks][:, :3], expected["mask_ids"][masks][:, :3])
