"""The generation loop on the tiny generative checkpoints, without a server: prompt checks, token-by-token decoding,
stop sequences, and TGI's parameter rules."""

import pytest
from hfserve.engine.generator import GeneratorEngine, IncrementalDecoder
from hfserve.serving.hf_inference.tgi import generation_params as tgi_params
from hfserve.tasks.generation import GeneratedToken, Generation, GenerationParams, text_pieces
from hfserve.tasks.params import InvalidRequest


@pytest.fixture(scope="module", params=["text_generation", "text2text_generation"])
def engine(request, tiny_models):
    return GeneratorEngine.load(tiny_models(request.param), device="cpu", dtype="float32")


@pytest.mark.parametrize("prompt", ["", " ", "\n\t  "])
def test_a_prompt_without_text_is_refused(engine, prompt):
    with pytest.raises(InvalidRequest, match="empty"):
        engine.prepare(prompt, GenerationParams())


def test_a_prompt_of_special_tokens_only_is_refused(engine):
    special = engine.tokenizer.eos_token
    with pytest.raises(InvalidRequest, match="no tokens"):
        engine.prepare(special, GenerationParams())


def test_streamed_tokens_add_up_to_the_whole_generation(engine):
    params = GenerationParams(max_new_tokens=10)
    whole = engine.generate(engine.prepare("the cat sat", params))
    streamed = list(engine.tokens(engine.prepare("the cat sat", params)))
    assert isinstance(streamed[-1], Generation) and streamed[-1].text == whole.text
    assert [t.id for t in streamed[:-1]] == [t.id for t in whole.tokens]
    assert "".join(t.text for t in streamed[:-1]) == whole.text
    assert whole.completion_tokens == len(whole.tokens) <= 10
    expected = engine.tokenizer.decode([t.id for t in whole.tokens], skip_special_tokens=True)
    assert whole.text == expected


def test_stop_sequence_ends_generation(engine):
    whole = engine.generate(engine.prepare("the cat sat", GenerationParams(max_new_tokens=10)))
    stop = whole.text.split()[0]
    params = GenerationParams(max_new_tokens=10, stop=(stop,))
    cut = engine.generate(engine.prepare("the cat sat", params))
    assert cut.stop_sequence == stop and cut.tgi_finish_reason == "stop_sequence" and cut.finish_reason == "stop"
    assert stop not in cut.text and whole.text.startswith(cut.text)
    pieces = list(text_pieces(engine.tokens(engine.prepare("the cat sat", params)), params.stop))
    assert "".join(pieces[:-1]) == cut.text


def test_incremental_decoding_keeps_multibyte_characters_whole(tiny_models):
    engine = GeneratorEngine.load(tiny_models("text_generation"), device="cpu", dtype="float32")
    text = "naïve café ✓ déjà vu"
    ids = engine.tokenizer(text)["input_ids"]
    decoder = IncrementalDecoder(engine.tokenizer)
    pieces = [decoder.add(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_text_pieces_hold_back_a_possible_stop_sequence():
    tokens = [GeneratedToken(i, t, 0.0, False) for i, t in enumerate(["ab", "c", "EN", "D", "x"])]
    final = Generation("abc", "stop", 1, 4, stop_sequence="END")
    pieces = list(text_pieces([*tokens[:4], final], ("END",)))
    assert "".join(p for p in pieces if isinstance(p, str)) == "abc" and pieces[-1] is final


def test_tgi_parameters_follow_tgi():
    assert tgi_params({}).sampling is False and tgi_params({}).max_new_tokens == 20
    assert tgi_params({"temperature": 0.5}).sampling and tgi_params({"top_k": 5}).sampling
    assert tgi_params({"do_sample": True}).temperature == 1.0
    assert tgi_params({"temperature": 1.0}).sampling is False
    for bad in ({"temperature": 0}, {"top_p": 1.5}, {"top_k": 0}, {"best_of": 2}, {"watermark": True},
                {"max_new_tokens": 0}, {"nonsense": 1}, {"stop": [""]}):
        with pytest.raises(InvalidRequest):
            tgi_params(bad)
    assert tgi_params({"best_of": 1, "watermark": False, "stop": ["\n"]}).stop == ("\n",)
