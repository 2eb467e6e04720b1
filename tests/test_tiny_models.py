"""The tiny random checkpoints from devkit.tiny_models load and run with transformers offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedTokenizerFast,
)

from devkit.tiny_models import (  # noqa: E402
    HIDDEN,
    KINDS,
    MAX_POSITIONS,
    SENTENCES,
    SEQUENCE_LABELS,
    TOKEN_LABELS,
    build_tiny_model,
)

AUTO_CLASSES = {
    "text_embedding": AutoModel,
    "sequence_classification": AutoModelForSequenceClassification,
    "rerank": AutoModelForSequenceClassification,
    "token_classification": AutoModelForTokenClassification,
    "fill_mask": AutoModelForMaskedLM,
    "text_generation": AutoModelForCausalLM,
    "text2text_generation": AutoModelForSeq2SeqLM,
}
BERT_KINDS = ["text_embedding", "sequence_classification", "rerank", "token_classification", "fill_mask"]
SHORT = "Paris is the capital of France."
LONG = "John Smith lives in New York with his family and works at a hospital."


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny-models")
    for kind in KINDS:
        build_tiny_model(kind, root / kind)
    return root


def _load(root: Path, kind: str):
    tokenizer = AutoTokenizer.from_pretrained(root / kind)
    model = AUTO_CLASSES[kind].from_pretrained(root / kind)
    model.eval()
    return tokenizer, model


def test_kinds_cover_every_auto_class():
    assert set(KINDS) == set(AUTO_CLASSES)


def test_unknown_kind_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown kind"):
        build_tiny_model("image_classification", tmp_path)


@pytest.mark.parametrize("kind", list(KINDS))
def test_loads_and_runs_a_padded_batch(tiny_root, kind):
    config = json.loads((tiny_root / kind / "config.json").read_text())
    assert config["architectures"] == [KINDS[kind]]

    tokenizer, model = _load(tiny_root, kind)
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    assert tokenizer.model_max_length == MAX_POSITIONS
    assert tokenizer.pad_token is not None
    assert type(model).__name__ == KINDS[kind]

    batch = tokenizer([SHORT, LONG], padding=True, return_tensors="pt")
    mask = batch["attention_mask"]
    assert mask[0].sum() < mask[1].sum()  # the two sentences really differ in length
    assert mask[1].all()
    batch_size, seq_len = batch["input_ids"].shape
    assert batch_size == 2
    vocab = model.config.vocab_size
    assert vocab >= len(tokenizer)

    with torch.no_grad():
        if kind == "text2text_generation":
            start = torch.full((2, 1), model.config.decoder_start_token_id, dtype=torch.long)
            out = model(**batch, decoder_input_ids=start)
        else:
            out = model(**batch)

    if kind == "text_embedding":
        assert out.last_hidden_state.shape == (2, seq_len, HIDDEN)
    elif kind == "sequence_classification":
        assert out.logits.shape == (2, len(SEQUENCE_LABELS))
    elif kind == "rerank":
        assert out.logits.shape == (2, 1)
    elif kind == "token_classification":
        assert out.logits.shape == (2, seq_len, len(TOKEN_LABELS))
    elif kind in ("fill_mask", "text_generation"):
        assert out.logits.shape == (2, seq_len, vocab)
    else:
        assert out.logits.shape == (2, 1, vocab)
    tensor = out.last_hidden_state if kind == "text_embedding" else out.logits
    assert torch.isfinite(tensor).all()


@pytest.mark.parametrize("kind", list(KINDS))
def test_tokenizer_round_trips_a_sentence(tiny_root, kind):
    tokenizer = AutoTokenizer.from_pretrained(tiny_root / kind)
    sentence = "Alice and Bob met in Tokyo last summer."
    ids = tokenizer(sentence)["input_ids"]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert text == (sentence.lower() if kind in BERT_KINDS else sentence)

    enc = tokenizer(sentence, return_offsets_mapping=True)
    assert len(enc["offset_mapping"]) == len(enc["input_ids"])
    assert all(0 <= start <= end <= len(sentence) for start, end in enc["offset_mapping"])


@pytest.mark.parametrize("kind", BERT_KINDS)
def test_bert_tokenizers_lower_case_and_know_every_training_word(tiny_root, kind):
    tokenizer = AutoTokenizer.from_pretrained(tiny_root / kind)
    assert tokenizer.model_input_names == ["input_ids", "token_type_ids", "attention_mask"]
    assert {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"} <= set(tokenizer.all_special_tokens)
    assert tokenizer.tokenize("LONDON Weather") == tokenizer.tokenize("london weather") == ["london", "weather"]

    for sentence in SENTENCES:
        tokens = tokenizer.tokenize(sentence)
        assert "[UNK]" not in tokens, sentence
        assert not any(t.startswith("##") for t in tokens), (sentence, tokens)  # whole words only

    enc = tokenizer("The cat sat on the mat.", "A dog barked.", return_offsets_mapping=True)
    assert set(enc["token_type_ids"]) == {0, 1}
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens.count("[SEP]") == 2
    assert "[UNK]" not in tokenizer.tokenize("unseenword")  # characters always tokenise


def test_label_maps(tiny_root):
    seq = AutoModelForSequenceClassification.from_pretrained(tiny_root / "sequence_classification").config
    assert seq.id2label == {0: "NEGATIVE", 1: "POSITIVE"}
    assert seq.label2id == {"NEGATIVE": 0, "POSITIVE": 1}
    tok = AutoModelForTokenClassification.from_pretrained(tiny_root / "token_classification").config
    assert tok.id2label == {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}


def test_fill_mask_predicts_at_the_mask(tiny_root):
    tokenizer, model = _load(tiny_root, "fill_mask")
    enc = tokenizer(f"The cat sat on the {tokenizer.mask_token}.", return_tensors="pt")
    position = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero().item()
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (1, enc["input_ids"].shape[1], model.config.vocab_size)
    assert torch.isfinite(logits[0, position]).all() and logits[0, position].std() > 0


def test_sentence_transformers_layout(tiny_root):
    root = tiny_root / "text_embedding"
    modules = json.loads((root / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    pooling = json.loads((root / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] is True
    assert pooling["word_embedding_dimension"] == HIDDEN

    st = pytest.importorskip("sentence_transformers")
    embeddings = st.SentenceTransformer(str(root), device="cpu").encode([SHORT, LONG])
    assert embeddings.shape == (2, HIDDEN)
    assert abs(float((embeddings[0] ** 2).sum()) - 1.0) < 1e-4


def test_text_generation_chat_template_and_generate(tiny_root):
    tokenizer, model = _load(tiny_root, "text_generation")
    assert tokenizer.pad_token == tokenizer.eos_token
    assert model.config.pad_token_id == model.config.eos_token_id == tokenizer.eos_token_id
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello, how are you?"}], tokenize=False, add_generation_prompt=True
    )
    assert "Hello, how are you?" in prompt and prompt.endswith("assistant:")
    enc = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[0] == 1 and enc["input_ids"].shape[1] < out.shape[1] <= enc["input_ids"].shape[1] + 4


def test_text2text_generate(tiny_root):
    tokenizer, model = _load(tiny_root, "text2text_generation")
    assert (tokenizer.pad_token, tokenizer.eos_token, tokenizer.unk_token) == ("<pad>", "</s>", "<unk>")
    enc = tokenizer(["Translate this sentence into German, please.", "Hello"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 2 and out.shape[1] <= 5


def test_building_twice_gives_identical_checkpoints(tiny_root, tmp_path):
    """A second build, in a fresh process through the CLI, matches the first: weights and tokenizers."""
    subprocess.run(
        [sys.executable, "-m", "devkit.tiny_models", "all", str(tmp_path)],
        check=True,
        capture_output=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    for kind in KINDS:
        first = load_file(tiny_root / kind / "model.safetensors")
        second = load_file(tmp_path / kind / "model.safetensors")
        assert first.keys() == second.keys(), kind
        for name in first:
            assert torch.equal(first[name], second[name]), (kind, name)
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            assert (tiny_root / kind / name).read_bytes() == (tmp_path / kind / name).read_bytes(), (kind, name)
