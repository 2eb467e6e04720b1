"""Tokenizer options, loading, and turning texts into the int64 tensors both runtimes send to the model."""

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .params import InputTooLong

# Tokenizers without a real limit report a huge sentinel as model_max_length.
_NO_LIMIT = 1_000_000

# One input: a text, or a (text, text_pair) pair that is tokenized together (cross-encoders, NLI).
TextInput = str | tuple[str, str]

# A text that will be truncated is cut to this many characters per token of max_length before it is tokenized, so
# the cost of a request is bounded by the limit, not by the body: 1 MiB of "." tokenized in full takes seconds on
# the event loop. The cut is checked (see TextEncoder._precut_is_exact) and undone where it could change the ids.
PRECUT_CHARS_PER_TOKEN = 16


@dataclass(frozen=True)
class TokenizerOptions:
    max_length: int | None = None  # None: the model's own maximum
    lower_case: bool = True  # False (--disable_lower_case) turns lower-casing off
    add_special_tokens: bool = True  # False (--disable_special_tokens)
    trust_remote_code: bool = False


@dataclass
class EncodedText:
    """One text, tokenized and truncated, not padded."""

    input_ids: list[int]
    token_type_ids: list[int] | None
    offsets: list[tuple[int, int]] | None

    def __len__(self) -> int:
        return len(self.input_ids)


def load_tokenizer(model_dir: Path, options: TokenizerOptions) -> PreTrainedTokenizerBase:
    kwargs = {"trust_remote_code": options.trust_remote_code}
    if not options.lower_case:
        kwargs["do_lower_case"] = False
    return AutoTokenizer.from_pretrained(str(model_dir), **kwargs)


def model_max_positions(model_dir: Path) -> int | None:
    """The longest input the checkpoint supports: sentence-transformers' max_seq_length, else config.json's."""
    st_config = Path(model_dir) / "sentence_bert_config.json"
    if st_config.is_file():
        max_seq_length = json.loads(st_config.read_text()).get("max_seq_length")
        if isinstance(max_seq_length, int) and max_seq_length > 0:
            return max_seq_length
    config = json.loads((Path(model_dir) / "config.json").read_text())
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        if isinstance(config.get(key), int) and config[key] > 0:
            return config[key]
    return None


def effective_max_length(tokenizer: PreTrainedTokenizerBase, model_dir: Path, requested: int | None) -> int:
    """--max_length if given, else the smaller of the tokenizer's and the model's limits (never above them)."""
    limits = [n for n in (tokenizer.model_max_length, model_max_positions(model_dir)) if n and n < _NO_LIMIT]
    ceiling = min(limits) if limits else 512
    if requested is None:
        return ceiling
    if requested <= 0:
        raise ValueError(f"--max_length must be positive, got {requested}")
    return min(requested, ceiling)


class TextEncoder:
    """Tokenizes texts with the runtime's options; pads groups of them into model inputs."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int, options: TokenizerOptions,
                 input_names: tuple[str, ...]):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.options = options
        self.input_names = input_names
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._backends: dict[tuple[bool, str], object] = {}
        self._backend = self.backend(truncate=True, direction="right")

    def backend(self, truncate: bool, direction: str):
        """The fast tokenizer's Rust backend set up for one truncation mode (None for slow tokenizers)."""
        key = (truncate, direction)
        if key not in self._backends:
            self._backends[key] = _rust_backend(self.tokenizer, self.max_length if truncate else None, direction)
        return self._backends[key]

    def encode(self, texts: list[TextInput], with_offsets: bool = False, truncate: bool = True,
               direction: str = "right") -> list[EncodedText]:
        """Token ids per text (or pair). With truncate=False an input over max_length raises InputTooLong."""
        backend = self.backend(truncate, direction) if self._backend is not None else None
        if backend is not None and _shares_first_text(texts):
            encoded = self._encode_shared_first(backend, texts[0][0], [t[1] for t in texts], truncate, direction)
        elif backend is not None and truncate:
            encoded = self._encode_precut(backend, texts, direction)
        elif backend is not None:
            encoded = self._encode_with_backend(backend, texts, check_lengths=True)
        else:
            encoded = self._encode_with_transformers(texts, with_offsets, truncate, direction)
        if not truncate:
            self.check_lengths(encoded)
        return encoded

    def check_lengths(self, encoded: list[EncodedText]) -> None:
        for index, e in enumerate(encoded):
            if len(e) > self.max_length:
                raise InputTooLong(
                    f"input {index} has {len(e)} tokens, more than this model's limit of {self.max_length} tokens; "
                    "shorten it or send truncate=true to cut it to the limit")

    def _encode_with_backend(self, backend, texts: list[TextInput], check_lengths: bool = False) -> list[EncodedText]:
        """The Rust tokenizer directly: the same ids as transformers' __call__, without its per-call overhead
        (about half a millisecond per request, which is most of the serving overhead at batch 1). With
        check_lengths, an input over max_length is refused before any Python list of its tokens is built (64
        texts of 16k words are 3M Python objects, built holding the GIL)."""
        with_types = "token_type_ids" in self.input_names
        encodings = backend.encode_batch(texts, add_special_tokens=self.options.add_special_tokens)
        if check_lengths:
            self.check_lengths(encodings)
        return [EncodedText(input_ids=e.ids, token_type_ids=e.type_ids if with_types else None, offsets=e.offsets)
                for e in encodings]

    def _encode_precut(self, backend, texts: list[TextInput], direction: str) -> list[EncodedText]:
        """Truncating encode of texts cut to PRECUT_CHARS_PER_TOKEN * max_length characters first (pairs are not
        cut). A cut text is encoded again in full unless the cut provably left its kept tokens as they were."""
        limit = PRECUT_CHARS_PER_TOKEN * self.max_length
        cut = [_cut(t, limit, direction) for t in texts]
        encoded = self._encode_with_backend(backend, cut)
        for i, (c, t, e) in enumerate(zip(cut, texts, encoded)):
            if c is t:
                continue
            if not self._precut_is_exact(backend, c, e, direction):
                encoded[i] = self._encode_with_backend(backend, [t])[0]
            elif direction == "left" and e.offsets:  # offsets into the kept tail: shift them to the whole text
                shift = len(t) - len(c)
                e.offsets = [(a + shift, b + shift) if b > 0 else (a, b) for a, b in e.offsets]
        return encoded

    def _encode_shared_first(self, backend, first: str, seconds: list[str], truncate: bool,
                             direction: str) -> list[EncodedText]:
        """Pairs with one first text (a rerank query and its documents): the first is tokenized once, not once per
        pair, and joined to each second text by `backend`'s own post_process, which truncates the pair and adds
        the special tokens and type ids as encode_batch does."""
        whole = self.backend(truncate=False, direction="right")
        documents = whole.encode_batch(seconds, add_special_tokens=False)
        query = self._shared_first_tokens(whole, first, max((len(d) for d in documents), default=0), truncate,
                                          direction)
        with_types = "token_type_ids" in self.input_names
        add = self.options.add_special_tokens
        pairs = [backend.post_process(query, d, add_special_tokens=add) for d in documents]
        return [EncodedText(input_ids=e.ids, token_type_ids=e.type_ids if with_types else None, offsets=e.offsets)
                for e in pairs]

    def _shared_first_tokens(self, whole, first: str, longest_second: int, truncate: bool, direction: str):
        """The shared first text's tokens, untruncated (truncating an Encoding builds its overflow, which every
        post_process would copy: for a 1 MiB query, minutes and gigabytes). Longest-first truncation keeps at most
        max_length of them and otherwise depends only on which text of a pair is longer, so when truncating, a
        text cut by characters serves if it still has more tokens than every second text and than max_length,
        and a word boundary lies between its last kept token and the cut (as _precut_is_exact)."""
        need = max(longest_second, self.max_length) + 1
        cut = _cut(first, PRECUT_CHARS_PER_TOKEN * need, direction) if truncate else first
        tokens = whole.encode(cut, add_special_tokens=False)
        if cut is first:
            return tokens
        kept = slice(0, self.max_length) if direction == "right" else slice(len(tokens) - self.max_length, None)
        head = EncodedText(tokens.ids[kept], None, tokens.offsets[kept])
        if len(tokens) >= need and self._precut_is_exact(whole, cut, head, direction):
            return tokens
        return whole.encode(first, add_special_tokens=False)

    def _precut_is_exact(self, backend, cut: str, encoded: EncodedText, direction: str) -> bool:
        """The kept tokens are the full text's when the encoding was truncated (max_length tokens) and a word
        boundary lies between the last kept token and the cut: tokenizers split the normalized text into words
        before anything else and tokenize each word alone, so what lies beyond a boundary cannot change the
        tokens before it."""
        if len(encoded) < self.max_length or not encoded.offsets:
            return False
        spans = [(a, b) for a, b in encoded.offsets if b > a]  # special tokens have empty spans
        if not spans:
            return False
        between = cut[max(b for _, b in spans):] if direction == "right" else cut[:min(a for a, _ in spans)]
        if any(ch.isspace() for ch in between):
            return True
        if backend.pre_tokenizer is None or not between:
            return False
        normalized = backend.normalizer.normalize_str(between) if backend.normalizer is not None else between
        return len(backend.pre_tokenizer.pre_tokenize_str(normalized)) >= 2

    def _encode_with_transformers(self, texts: list[TextInput], with_offsets: bool, truncate: bool,
                                  direction: str) -> list[EncodedText]:
        pairs = [t for t in texts if isinstance(t, tuple)]
        if pairs and len(pairs) != len(texts):
            return [e for t in texts for e in self._encode_with_transformers([t], with_offsets, truncate, direction)]
        first = [t[0] for t in texts] if pairs else texts
        second = [t[1] for t in texts] if pairs else None
        side = self.tokenizer.truncation_side
        self.tokenizer.truncation_side = direction
        try:
            batch = self._call_tokenizer(first, second, with_offsets, truncate)
        finally:
            self.tokenizer.truncation_side = side
        type_ids = batch.get("token_type_ids")
        offsets = batch.get("offset_mapping")
        return [
            EncodedText(
                input_ids=list(ids),
                token_type_ids=list(type_ids[i]) if type_ids is not None else None,
                offsets=[tuple(o) for o in offsets[i]] if offsets is not None else None,
            )
            for i, ids in enumerate(batch["input_ids"])
        ]

    def _call_tokenizer(self, first: list[str], second: list[str] | None, with_offsets: bool, truncate: bool):
        return self.tokenizer(
            first,
            second,
            truncation=truncate,
            max_length=self.max_length if truncate else None,
            add_special_tokens=self.options.add_special_tokens,
            return_offsets_mapping=with_offsets,
            return_token_type_ids="token_type_ids" in self.input_names,
            return_attention_mask=False,
        )

    def pad(self, encoded: list[EncodedText]) -> dict[str, np.ndarray]:
        """Right-pads a group of texts to its longest member: the model inputs, int64 [batch, length]."""
        return pad_encoded(encoded, self.pad_id, self.input_names)


def _shares_first_text(texts: list[TextInput]) -> bool:
    """Whether these are two or more pairs with the same first text."""
    if len(texts) < 2 or not all(isinstance(t, tuple) for t in texts):
        return False
    first = texts[0][0]
    return all(t[0] == first for t in texts)


def _cut(text: TextInput, limit: int, direction: str) -> TextInput:
    if not isinstance(text, str) or len(text) <= limit:
        return text
    return text[:limit] if direction == "right" else text[-limit:]


def _rust_backend(tokenizer: PreTrainedTokenizerBase, max_length: int | None, direction: str = "right"):
    """A private copy of a fast tokenizer's Rust backend that never pads and truncates to max_length from
    `direction` (max_length None: never truncates). None where transformers' own __call__ must be used."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or getattr(tokenizer, "truncation_side", "right") != "right":
        return None
    backend = copy.deepcopy(backend)
    backend.no_padding()
    if max_length is None:
        backend.no_truncation()
    else:
        backend.enable_truncation(max_length=max_length, direction=direction)
    return backend


def pad_encoded(encoded: list[EncodedText], pad_id: int, input_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    length = max(len(e) for e in encoded)
    input_ids = np.full((len(encoded), length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(encoded), length), dtype=np.int64)
    token_type_ids = np.zeros((len(encoded), length), dtype=np.int64)
    for row, e in enumerate(encoded):
        n = len(e)
        input_ids[row, :n] = e.input_ids
        attention_mask[row, :n] = 1
        if e.token_type_ids is not None:
            token_type_ids[row, :n] = e.token_type_ids
    arrays = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
    return {name: arrays[name] for name in input_names}
