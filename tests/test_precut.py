"""Truncating encodes cut very long texts to PRECUT_CHARS_PER_TOKEN * max_length characters before tokenizing:
the ids (and offsets) are still exactly what transformers' tokenizer gives for the whole text, with three
tokenizer families (WordPiece, byte-level BPE, Unigram), and the tokenizer never sees more than the cut of a
hostile text."""

import random

import pytest
from hfserve.errors import InputTooLong
from hfserve.packaged_model import packaged_model_dir
from hfserve.tasks import tokenization
from hfserve.tasks.tokenization import TextEncoder, TokenizerOptions, load_tokenizer

from devkit.tiny_models import build_tiny_model

MAX_LENGTH = 32
WORDS = "the quick brown fox jumps over a lazy dog while serving embeddings at scale, again and again.".split()


def long_texts() -> list[str]:
    rng = random.Random(7)
    prose = [" ".join(rng.choice(WORDS) for _ in range(n)) for n in (5, 40, 600, 5000)]
    limit = tokenization.PRECUT_CHARS_PER_TOKEN * MAX_LENGTH
    return prose + [
        "." * 50_000,  # punctuation only: every character a word
        "x" * (limit + 10) + " end",  # one word crossing the cut: the cut is undone
        "日本語のテキスト" * 2_000,  # no whitespace at all
        "word " * (limit // 5 - 1) + "y" * 400 + " tail",  # a long word right at the cut
        "  \n\t " * 5_000 + "late words after a lot of whitespace",
    ]


@pytest.fixture(scope="module", params=["wordpiece", "byte_level_bpe", "unigram"])
def tokenizer(request, tmp_path_factory):
    if request.param == "wordpiece":
        model_dir = packaged_model_dir()
    else:
        kind = {"byte_level_bpe": "text_generation", "unigram": "text2text_generation"}[request.param]
        model_dir = build_tiny_model(kind, tmp_path_factory.mktemp(kind))
    return load_tokenizer(model_dir, TokenizerOptions())


class RecordingBackend:
    """The Rust backend, recording the longest text it was asked to encode."""

    def __init__(self, backend):
        self.backend, self.longest = backend, 0

    def encode_batch(self, texts, **kwargs):
        self.longest = max([self.longest, *(len(t) for t in texts if isinstance(t, str))])
        return self.backend.encode_batch(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.backend, name)


@pytest.mark.parametrize("direction", ["right", "left"])
def test_precut_keeps_transformers_ids_and_offsets(tokenizer, direction):
    texts = long_texts()
    encoder = TextEncoder(tokenizer, MAX_LENGTH, TokenizerOptions(), ("input_ids", "attention_mask"))
    ours = encoder.encode(texts, truncate=True, direction=direction)
    tokenizer.truncation_side = direction
    try:
        reference = tokenizer(texts, truncation=True, max_length=MAX_LENGTH, return_offsets_mapping=True)
    finally:
        tokenizer.truncation_side = "right"
    assert [e.input_ids for e in ours] == [list(ids) for ids in reference["input_ids"]]
    assert [list(map(tuple, e.offsets)) for e in ours] == [list(map(tuple, o)) for o in reference["offset_mapping"]]


def test_a_hostile_text_is_cut_before_the_tokenizer_sees_it():
    tokenizer = load_tokenizer(packaged_model_dir(), TokenizerOptions())
    encoder = TextEncoder(tokenizer, MAX_LENGTH, TokenizerOptions(), ("input_ids", "attention_mask"))
    recording = RecordingBackend(encoder.backend(truncate=True, direction="right"))
    encoder._backends[(True, "right")] = recording
    encoded = encoder.encode(["." * (1 << 20)], truncate=True)
    assert len(encoded[0]) == MAX_LENGTH
    assert recording.longest == tokenization.PRECUT_CHARS_PER_TOKEN * MAX_LENGTH
    with pytest.raises(InputTooLong):  # without truncation nothing is cut, and too long stays too long
        encoder.encode(["." * 1000], truncate=False)
