"""serving/body.py, the one strict JSON parser of every route: what it refuses, and that it never raises anything
but InvalidRequest (a 4xx) whatever the bytes."""

import json

import pytest
from hfserve.errors import InvalidJSON, InvalidRequest
from hfserve.serving import body
from pydantic import BaseModel

DEEP = 100_000


@pytest.mark.parametrize(("raw", "says"), [
    (b'"\\ud800"', "surrogate"),
    (b'{"inputs": ["ok", "\\udfff"]}', "surrogate"),
    (b'{"\\ud800": 1}', "surrogate"),  # keys too
    (b'[NaN]', "NaN"),
    (b'{"x": Infinity}', "Infinity"),
    (b'{"x": -Infinity}', "Infinity"),
    (b'[1e999]', "out of range"),
    (b'[-1e999]', "out of range"),
    (b'[' + b'1' * 5000 + b']', "not valid JSON"),  # past Python's int digit limit
    (b'[' * DEEP + b']' * DEEP, "deeper than 64"),  # the C scanner's RecursionError
    (b'{"inputs": ' + b'[' * 70 + b']' * 70 + b'}', "deeper than 64"),  # under the recursion limit, over ours
    (b'\xff\xfe{}', "UTF-8"),
    ('{"a": 1}'.encode("utf-16"), "UTF-8"),  # json.loads would guess UTF-16; we do not
    (b'{not json', "not valid JSON"),
    (b'', "not valid JSON"),
    (b'{"a": 1} trailing', "not valid JSON"),
])
def test_refused_with_a_message(raw, says):
    with pytest.raises(InvalidJSON, match=says):
        body.loads(raw)


def test_accepted_json_is_the_same_as_json_loads():
    raw = '{"inputs": ["caf\u00e9", "\\ud83d\\ude00", ""], "n": [1, -2.5, 1e300, 12345678901234567890], "b": null}'
    assert body.loads(raw.encode()) == json.loads(raw)
    nested = "[" * 64 + "]" * 64
    assert body.loads(nested) == json.loads(nested)


def test_invalid_json_is_an_invalid_request():
    assert issubclass(InvalidJSON, InvalidRequest) and InvalidJSON.kind == "invalid_json"


def test_check_text_and_value():
    assert body.check_text("caf\u00e9") == "caf\u00e9"
    with pytest.raises(InvalidRequest, match="text 3 holds a lone"):
        body.check_text("a\udc00b", "text 3")
    deep = []
    for _ in range(DEEP):  # built without the parser: check_value walks it without recursion
        deep = [deep]
    with pytest.raises(InvalidRequest, match="deeper than 64"):
        body.check_value(deep)


class Schema(BaseModel):
    inputs: list[str]


def test_validate_wants_an_object_and_says_what_is_wrong():
    assert body.validate({"inputs": ["a"]}, Schema).inputs == ["a"]
    with pytest.raises(InvalidRequest, match="must be a JSON object"):
        body.validate([1], Schema)
    with pytest.raises(InvalidRequest, match=r"inputs\.0: Input should be a valid string"):
        body.validate({"inputs": [1]}, Schema)
