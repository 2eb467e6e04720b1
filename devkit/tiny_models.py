"""Tiny random-weight Hugging Face checkpoints, built locally in seconds with no hub access.

Each kind is a real transformers architecture with a small config (hidden size 32, 2 layers,
2 heads, intermediate size 37, 64 positions) and a tokenizer trained with the `tokenizers`
library on a few dozen built-in English sentences. Weights come from a fixed `torch.manual_seed`,
so building the same kind twice gives identical tensors.

    from devkit.tiny_models import KINDS, build_tiny_model
    build_tiny_model("sequence_classification", Path("/tmp/tiny-cls"))

Command line:

    python -m devkit.tiny_models KIND OUT_DIR
    python -m devkit.tiny_models all ROOT      # every kind into ROOT/KIND

Kinds:
    text_embedding           BertModel + sentence-transformers files (mean pooling, Normalize module)
    sequence_classification  BertForSequenceClassification, labels NEGATIVE / POSITIVE
    token_classification     BertForTokenClassification, labels O B-PER I-PER B-LOC I-LOC
    fill_mask                BertForMaskedLM
    text_generation          GPT2LMHeadModel, byte-level BPE, eos doubles as pad, simple chat template
    text2text_generation     T5ForConditionalGeneration, unigram tokenizer with <pad> </s> <unk>

Variants (VARIANTS; same architectures, other head or pooling settings, for the reference tests):
    text_embedding_cls          as text_embedding, CLS-token pooling, no Normalize module
    text_embedding_max          as text_embedding, max pooling, Normalize module
    multi_label_classification  BertForSequenceClassification, problem_type multi_label_classification,
                                labels SPORT / POLITICS / SCIENCE (one sigmoid per label)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

# Never reach for the hub from here, whoever imports us.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SEED = 1234
HIDDEN = 32
LAYERS = 2
HEADS = 2
INTERMEDIATE = 37
MAX_POSITIONS = 64

SEQUENCE_LABELS = {0: "NEGATIVE", 1: "POSITIVE"}
RERANK_LOGIT_SCALE = 1000.0
MULTI_LABELS = {0: "SPORT", 1: "POLITICS", 2: "SCIENCE"}
TOKEN_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}

BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
GPT2_EOS = "<|endoftext|>"
T5_SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "I love this movie, it was wonderful and moving.",
    "This film was terrible and a complete waste of time.",
    "The food at the restaurant was delicious.",
    "The service was slow and the staff were rude.",
    "What a great day to go for a walk in the park!",
    "I am not happy with the quality of this product.",
    "She said the book was the best she had ever read.",
    "The weather in London is rainy today.",
    "Paris is the capital of France.",
    "John Smith lives in New York with his family.",
    "Mary works at a hospital in Berlin.",
    "Alice and Bob met in Tokyo last summer.",
    "The train from Madrid to Lisbon leaves at noon.",
    "Hello, how are you doing this morning?",
    "Thank you very much for your help.",
    "Can you tell me the way to the station?",
    "Machine learning models can classify text.",
    "Transformers are neural networks built on attention.",
    "Serving models in production needs fast inference.",
    "The server returned an answer in a few milliseconds.",
    "Please send the request again later.",
    "It is a sunny afternoon and the children are playing outside.",
    "My favourite colour is blue, but I also like green.",
    "The cat sat on the mat and fell asleep.",
    "A dog barked at the mailman all morning.",
    "We bought fresh bread, cheese and apples at the market.",
    "The meeting was cancelled because the manager was sick.",
    "He plays the guitar and sings in a small band.",
    "Rivers flow from the mountains down to the sea.",
    "The museum opens at nine and closes at five.",
    "This is the worst phone I have ever owned.",
    "Absolutely fantastic performance, I would watch it again.",
    "The price is fair and delivery was quick.",
    "Nobody answered the phone when I called the office.",
    "Translate this sentence into German, please.",
    "Summarize the article in one short paragraph.",
    "The answer to the question is forty two.",
    "Good morning, the coffee is ready in the kitchen.",
    "Our team won the match by three goals.",
    "Emma visited her grandmother in Rome.",
    "The library has thousands of old books.",
]


# ---------------------------------------------------------------------------------------------
# tokenizers


def _bert_vocab() -> dict[str, int]:
    """A WordPiece vocab for SENTENCES: every whole lower-cased word, every character (alone and as
    a ``##`` continuation, so no word of known characters becomes [UNK]) and common English suffixes.

    Words come from the `tokenizers` BERT normalizer and pre-tokenizer. The vocab is assembled and
    sorted here rather than by `WordPieceTrainer`, whose tie-breaking differs from one process to the
    next (different vocab sizes, hence different weight shapes).
    """
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: set[str] = set()
    for sentence in SENTENCES:
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(sentence)))
    chars = sorted({c for word in words for c in word})
    pieces = (
        chars
        + [f"##{c}" for c in chars]
        + sorted(f"##{suffix}" for suffix in _WORDPIECE_SUFFIXES)
        + sorted(words - set(chars))
    )
    ordered = BERT_SPECIAL_TOKENS + list(dict.fromkeys(pieces))
    return {token: i for i, token in enumerate(ordered)}


_WORDPIECE_SUFFIXES = ["s", "es", "ed", "er", "ers", "est", "ing", "ly", "ful", "ness", "tion", "able", "ment"]


def _bert_tokenizer():
    from transformers import BertTokenizer  # the tokenizers-backed (fast) class in transformers 5

    return BertTokenizer(
        vocab=_bert_vocab(),
        do_lower_case=True,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=MAX_POSITIONS,
    )


def _gpt2_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Tokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        min_frequency=1,
        special_tokens=[GPT2_EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]

    tokenizer = GPT2Tokenizer(
        vocab=dict(model["vocab"]),
        merges=merges,
        unk_token=GPT2_EOS,
        bos_token=GPT2_EOS,
        eos_token=GPT2_EOS,
        pad_token=GPT2_EOS,
        add_prefix_space=False,
        model_max_length=MAX_POSITIONS,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _t5_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True),
        ]
    )
    trainer = trainers.UnigramTrainer(
        vocab_size=300,
        special_tokens=T5_SPECIAL_TOKENS,
        unk_token="<unk>",
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES, trainer=trainer)
    trained = json.loads(tok.to_str())["model"]["vocab"]
    if [piece for piece, _ in trained[:3]] != T5_SPECIAL_TOKENS:
        raise RuntimeError(f"unexpected T5 special token order: {trained[:3]}")
    # The trainer's scores differ slightly between processes (float sums, and the rare characters it
    # appends get tiny offsets in hash order): round them and fix the order.
    rest = sorted(((piece, round(float(score), 2)) for piece, score in trained[3:]), key=lambda ps: (-ps[1], ps[0]))
    vocab = [(piece, 0.0) for piece in T5_SPECIAL_TOKENS] + rest

    return T5Tokenizer(
        vocab=vocab,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=MAX_POSITIONS,
    )


# ---------------------------------------------------------------------------------------------
# models


def _bert_config(vocab_size: int, **extra):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        max_position_embeddings=MAX_POSITIONS,
        type_vocab_size=2,
        pad_token_id=0,
        **extra,
    )


def _labels(id2label: dict[int, str]) -> dict:
    return {"id2label": dict(id2label), "label2id": {v: k for k, v in id2label.items()}}


def _build_text_embedding(out_dir: Path, pooling_mode: str = "mean_tokens", normalize: bool = True) -> None:
    from transformers import BertModel

    tokenizer = _bert_tokenizer()
    model = _seeded(lambda: BertModel(_bert_config(len(tokenizer))))
    _save(model, tokenizer, out_dir)

    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    pooling = {"word_embedding_dimension": HIDDEN}
    for mode in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens"):
        pooling[f"pooling_mode_{mode}"] = mode == pooling_mode
    _write_json(out_dir / "modules.json", modules)
    _write_json(out_dir / "1_Pooling" / "config.json", pooling)
    if normalize:
        (out_dir / "2_Normalize").mkdir(exist_ok=True)
    _write_json(out_dir / "sentence_bert_config.json", {"max_seq_length": MAX_POSITIONS, "do_lower_case": False})
    _write_json(out_dir / "config_sentence_transformers.json", {"__version__": {}, "similarity_fn_name": "cosine"})


def _build_sequence_classification(out_dir: Path) -> None:
    from transformers import BertForSequenceClassification

    tokenizer = _bert_tokenizer()
    config = _bert_config(len(tokenizer), **_labels(SEQUENCE_LABELS))
    _save(_seeded(lambda: BertForSequenceClassification(config)), tokenizer, out_dir)


def _build_rerank(out_dir: Path) -> None:
    """A cross-encoder as sentence-transformers saves one: a single-logit BERT sequence classifier whose config
    names the activation (sigmoid) that turns the logit into a relevance score."""
    from transformers import BertForSequenceClassification

    tokenizer = _bert_tokenizer()
    config = _bert_config(len(tokenizer), num_labels=1)
    config.sentence_transformers = {"activation_fn": "torch.nn.modules.activation.Sigmoid"}
    model = _seeded(lambda: BertForSequenceClassification(config))
    model.classifier.weight.data *= RERANK_LOGIT_SCALE  # random logits near 0 would rank by float noise
    _save(model, tokenizer, out_dir)


def _build_multi_label_classification(out_dir: Path) -> None:
    from transformers import BertForSequenceClassification

    tokenizer = _bert_tokenizer()
    config = _bert_config(len(tokenizer), problem_type="multi_label_classification", **_labels(MULTI_LABELS))
    _save(_seeded(lambda: BertForSequenceClassification(config)), tokenizer, out_dir)


def _build_token_classification(out_dir: Path) -> None:
    from transformers import BertForTokenClassification

    tokenizer = _bert_tokenizer()
    config = _bert_config(len(tokenizer), **_labels(TOKEN_LABELS))
    _save(_seeded(lambda: BertForTokenClassification(config)), tokenizer, out_dir)


def _build_fill_mask(out_dir: Path) -> None:
    from transformers import BertForMaskedLM

    tokenizer = _bert_tokenizer()
    _save(_seeded(lambda: BertForMaskedLM(_bert_config(len(tokenizer)))), tokenizer, out_dir)


def _build_text_generation(out_dir: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = _gpt2_tokenizer()
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=MAX_POSITIONS,
        n_embd=HIDDEN,
        n_layer=LAYERS,
        n_head=HEADS,
        n_inner=INTERMEDIATE,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    _save(_seeded(lambda: GPT2LMHeadModel(config)), tokenizer, out_dir)


def _build_text2text_generation(out_dir: Path) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = _t5_tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=HIDDEN,
        d_kv=HIDDEN // HEADS,
        d_ff=INTERMEDIATE,
        num_layers=LAYERS,
        num_decoder_layers=LAYERS,
        num_heads=HEADS,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=MAX_POSITIONS // 2,
        feed_forward_proj="relu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    _save(_seeded(lambda: T5ForConditionalGeneration(config)), tokenizer, out_dir)


def _seeded(make: Callable):
    import torch

    torch.manual_seed(SEED)
    model = make()
    model.eval()
    return model


def _save(model, tokenizer, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


_BUILDERS: dict[str, Callable[[Path], None]] = {
    "text_embedding": _build_text_embedding,
    "sequence_classification": _build_sequence_classification,
    "rerank": _build_rerank,
    "token_classification": _build_token_classification,
    "fill_mask": _build_fill_mask,
    "text_generation": _build_text_generation,
    "text2text_generation": _build_text2text_generation,
    "text_embedding_cls": lambda out_dir: _build_text_embedding(out_dir, "cls_token", normalize=False),
    "text_embedding_max": lambda out_dir: _build_text_embedding(out_dir, "max_tokens", normalize=True),
    "multi_label_classification": _build_multi_label_classification,
}

# kind -> transformers model class name (also the config.json `architectures` entry)
KINDS: dict[str, str] = {
    "text_embedding": "BertModel",
    "sequence_classification": "BertForSequenceClassification",
    "rerank": "BertForSequenceClassification",
    "token_classification": "BertForTokenClassification",
    "fill_mask": "BertForMaskedLM",
    "text_generation": "GPT2LMHeadModel",
    "text2text_generation": "T5ForConditionalGeneration",
}

# variant -> transformers model class name: the same tasks with another pooling or head configuration
VARIANTS: dict[str, str] = {
    "text_embedding_cls": "BertModel",
    "text_embedding_max": "BertModel",
    "multi_label_classification": "BertForSequenceClassification",
}


def build_tiny_model(kind: str, out_dir: Path) -> Path:
    """Build the tiny checkpoint of `kind` into `out_dir` (created if missing) and return `out_dir`."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted([*KINDS, *VARIANTS])}")
    out_dir = Path(out_dir)
    _BUILDERS[kind](out_dir)
    return out_dir


def build_all(root: Path) -> dict[str, Path]:
    """Build every kind into root/KIND."""
    root = Path(root)
    return {kind: build_tiny_model(kind, root / kind) for kind in KINDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devkit.tiny_models",
        description="Build tiny random-weight Hugging Face checkpoints locally (no hub access).",
    )
    parser.add_argument("kind", choices=[*KINDS, *VARIANTS, "all"], help="kind to build, or 'all' for every kind into OUT_DIR/KIND")
    parser.add_argument("out_dir", type=Path, help="output directory (the root directory with 'all')")
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if args.kind == "all":
        for path in build_all(args.out_dir).values():
            print(path)
    else:
        print(build_tiny_model(args.kind, args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
