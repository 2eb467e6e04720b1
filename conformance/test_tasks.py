"""The other encoder tasks, on tiny locally built checkpoints: every protocol answers in shape."""

import pytest

from conformance import protocol as P

pytestmark = pytest.mark.tasks

TEXTS = ["The weather in London is rainy today.", "Alice and Bob met in Tokyo last summer."]


def _texts(dep):
    return [t.replace("London", "[MASK]").replace("Tokyo", "[MASK]") for t in TEXTS] if dep.task == "fill_mask" else TEXTS


@pytest.mark.v1
def test_v1_predict(tiny):
    with tiny.http() as http:
        preds = P.v1_predictions(P.v1_predict(http, tiny.model_name, _texts(tiny)))
    assert len(preds) == len(TEXTS), preds
    for prediction in preds:
        assert _shaped_like_the_task(tiny.task, prediction), (tiny.task, prediction)


def _shaped_like_the_task(task: str, prediction) -> bool:
    """The documented V1 result of one text, per task (README, "Tasks")."""
    if task == "sequence_classification":
        return isinstance(prediction, dict) and isinstance(prediction.get("label"), str) \
            and 0 <= prediction.get("score", -1) <= 1
    if task == "token_classification":
        keys = {"entity_group", "score", "word", "start", "end"}
        return isinstance(prediction, list) and all(isinstance(e, dict) and set(e) == keys for e in prediction)
    if task == "fill_mask":
        keys = {"score", "token", "token_str", "sequence"}
        return isinstance(prediction, list) and bool(prediction) and all(set(c) == keys for c in prediction)
    return False


@pytest.mark.v2_rest
def test_v2_infer_matches_metadata(tiny):
    with tiny.http() as http:
        meta = P.ok_json(http.get(f"/v2/models/{tiny.model_name}"))
        outs = P.v2_outputs(P.v2_infer(http, tiny.model_name, _texts(tiny)))
    declared = {o["name"]: o for o in meta["outputs"]}
    assert set(outs) <= set(declared), (set(outs), set(declared))
    for name, arr in outs.items():
        assert arr.shape[0] == len(TEXTS), (name, arr.shape)
        assert len(arr.shape) == len(declared[name]["shape"]), (name, arr.shape, declared[name]["shape"])


@pytest.mark.bad_input
def test_v1_bad_input(tiny):
    with tiny.http() as http:
        P.assert_json_error(http.post(f"/v1/models/{tiny.model_name}:predict", json={"instances": [1, 2]}))
        P.v1_predictions(P.v1_predict(http, tiny.model_name, _texts(tiny)))
