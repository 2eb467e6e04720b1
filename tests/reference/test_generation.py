"""Generation on runtime 1 (Triton does not serve generative tasks) against transformers' generate() on the same
checkpoint in the test process: greedy output identical, and seed-fixed sampling (temperature, top_p)
identical to generate() after torch.manual_seed(seed)."""

from functools import cache

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from .conftest import predict

PROMPTS = {"writer": ["the cat", "Paris is the capital of"], "t5": ["translate: the cat", "summarize: the dog"]}
NEW_TOKENS = 10


@cache
def reference(path: str, causal: bool):
    model_class = AutoModelForCausalLM if causal else AutoModelForSeq2SeqLM
    return model_class.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def generate(path: str, causal: bool, prompt: str, **sampling) -> str:
    model, tokenizer = reference(path, causal)
    encoded = tokenizer(prompt, return_tensors="pt")
    options = dict(max_new_tokens=NEW_TOKENS, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    if sampling:
        torch.manual_seed(sampling.pop("seed"))
        options.update(do_sample=True, **sampling)
    else:
        options.update(do_sample=False)
    with torch.inference_mode():
        output = model.generate(**encoded, **options)[0]
    new = output[encoded["input_ids"].shape[1]:] if causal else output
    return tokenizer.decode(new, skip_special_tokens=True)


@pytest.mark.parametrize("name", ["writer", "t5"])
def test_greedy_equals_generate(served, model_dir, name):
    server = served("huggingface", name)
    for prompt in PROMPTS[name]:
        expected = generate(str(model_dir(name)), name == "writer", prompt)
        got = predict(server, [prompt], max_new_tokens=NEW_TOKENS)[0]
        assert got["generated_text"] == expected, prompt
        assert got["generated_text"], "the reference comparison needs a non-empty continuation"


@pytest.mark.parametrize("name", ["writer", "t5"])
def test_seeded_sampling_equals_generate_and_repeats(served, model_dir, name):
    server = served("huggingface", name)
    prompt = PROMPTS[name][0]
    texts = {}
    for seed in (7, 8):
        sampling = dict(temperature=1.3, top_p=0.9, seed=seed)
        first = predict(server, [prompt], max_new_tokens=NEW_TOKENS, **sampling)[0]["generated_text"]
        again = predict(server, [prompt], max_new_tokens=NEW_TOKENS, **sampling)[0]["generated_text"]
        assert first == again
        assert first == generate(str(model_dir(name)), name == "writer", prompt, **sampling)
        texts[seed] = first
    greedy = generate(str(model_dir(name)), name == "writer", prompt)
    assert len({texts[7], texts[8], greedy}) == 3, "sampling did not change the output: the sampling path was not taken"
