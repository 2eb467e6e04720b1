"""The engine's StopSignal on a real tiny T5 (transformers' generate(), random weights): a cancelled or expired
generation ends within one step, counted by the engine's own stopping-criteria hook (`steps_run`), and a request
waiting for the model leaves the queue without waiting for the one that holds it."""

import threading
import time

import pytest
from hfserve.engine.generator import GeneratorEngine, StopSignal
from hfserve.tasks.generation import GenerationCancelled, GenerationLimits, GenerationParams, GenerationTimedOut
from hfserve.tasks.params import InvalidRequest

LONG = GenerationParams(max_new_tokens=4000)


@pytest.fixture(scope="module")
def engine(tiny_models):
    return GeneratorEngine.load(tiny_models("text2text_generation"))


def test_a_cancelled_stream_stops_within_one_step(engine):
    stop = StopSignal()
    before = engine.steps_run
    received = 0
    with pytest.raises(GenerationCancelled, match="client went away"):
        for _ in engine.tokens(engine.prepare("translate this sentence", LONG), stop):
            received += 1
            if received == 5:
                stop.cancelled.set()
    # the token being generated when the flag was set, and the one the stream holds back, at most
    assert 5 <= engine.steps_run - before <= 7, engine.steps_run - before


def test_a_deadline_ends_a_generation_and_a_waiting_request_leaves_the_queue(engine):
    holder = StopSignal()
    held: dict = {}

    def hold_the_model():
        try:
            engine.generate(engine.prepare("translate this sentence", LONG), holder)
        except GenerationCancelled as error:
            held["error"] = error

    before = engine.steps_run
    thread = threading.Thread(target=hold_the_model, daemon=True)
    thread.start()
    try:
        wait_and_overtake(engine, before, thread)
    finally:
        holder.cancelled.set()
        thread.join(30)
    assert "error" in held and engine.steps_run - before < LONG.max_new_tokens


def wait_and_overtake(engine, before: int, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 30
    while engine.steps_run == before and time.monotonic() < deadline:  # the first request is generating
        time.sleep(0.01)
    assert engine.steps_run > before
    waiting = StopSignal(deadline=time.monotonic() + 0.3, timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(GenerationTimedOut, match="--generation_timeout_s"):
        engine.generate(engine.prepare("hello world", GenerationParams(max_new_tokens=3)), waiting)
    assert 0.3 <= time.monotonic() - started < 2.0
    assert thread.is_alive()  # it left while the model was still busy with the first request


def test_prompt_tokens_over_the_limit_are_refused_unless_truncated(engine):
    limits = GenerationLimits(max_input_tokens=8)
    prompt = " ".join(["word"] * 30)
    with pytest.raises(InvalidRequest, match="--max_input_tokens"):
        engine.prepare(prompt, GenerationParams(max_new_tokens=2), limits)
    assert engine.prepare(prompt, GenerationParams(max_new_tokens=2, truncate=8), limits).prompt_tokens == 8


def test_stop_sequences_are_capped_in_length():
    from hfserve.tasks.generation import MAX_STOP_CHARS, generation_params

    assert generation_params({"stop": ["x" * MAX_STOP_CHARS]}).stop == ("x" * MAX_STOP_CHARS,)
    with pytest.raises(InvalidRequest, match=f"at most {MAX_STOP_CHARS} characters"):
        generation_params({"stop": ["x" * 900_000]})
