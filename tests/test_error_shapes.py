"""serving/error_shapes.py: one status table and one body shape per protocol family, the kinds of kserve's,
FastAPI's and Starlette's exceptions, and gRPC's codes for the same kinds."""

import json

import pytest
from fastapi.exceptions import RequestValidationError
from grpc import StatusCode
from hfserve import errors
from hfserve.serving import error_shapes
from kserve import errors as kserve_errors
from starlette.exceptions import HTTPException

PATHS = {"kserve": "/v2/models/m/infer", "tei": "/embed", "hf": "/generate", "openai": "/openai/v1/embeddings",
         "rerank": "/v1/rerank"}
# One instance of every domain error, by kind.
ERRORS = {cls.kind: cls(f"a {cls.kind} message") for cls in (
    errors.InvalidRequest, errors.InvalidJSON, errors.InputTooLong, errors.WrongTask, errors.ModelNotFound,
    errors.BodyTooLarge, errors.Overloaded, errors.Unavailable)}
EXPECTED = {  # family -> kind -> status, as each protocol's own servers answer
    "kserve": {"invalid_request": 400, "invalid_json": 400, "input_too_long": 400, "wrong_task": 400,
               "model_not_found": 404, "body_too_large": 413, "overloaded": 429, "unavailable": 503},
    "tei": {"invalid_request": 422, "invalid_json": 422, "input_too_long": 413, "wrong_task": 400,
            "model_not_found": 404, "body_too_large": 413, "overloaded": 429, "unavailable": 503},
    "hf": {"invalid_request": 422, "invalid_json": 400, "input_too_long": 413, "wrong_task": 404,
           "model_not_found": 404, "body_too_large": 413, "overloaded": 429, "unavailable": 503},
    "openai": {"invalid_request": 400, "invalid_json": 400, "input_too_long": 400, "wrong_task": 400,
               "model_not_found": 404, "body_too_large": 413, "overloaded": 429, "unavailable": 503},
}
EXPECTED["rerank"] = EXPECTED["openai"]


@pytest.mark.parametrize("name", sorted(PATHS))
def test_every_kind_has_its_status_and_the_familys_shape(name):
    path = PATHS[name]
    assert error_shapes.family(path) == name
    assert set(error_shapes.TABLES[name]) == set(error_shapes.KINDS)
    for kind, error in ERRORS.items():
        response = error_shapes.render(error, path)
        body = json.loads(response.body)
        assert response.status_code == EXPECTED[name][kind], (name, kind)
        if name in ("openai", "rerank"):
            assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code"}
            assert body["error"]["message"] == str(error) and body["error"]["code"] == response.status_code
        elif name in ("tei", "hf"):
            assert set(body) == {"error", "error_type"} and body["error"] == str(error)
        elif kind == "overloaded":
            assert body == {"error": str(error), "error_type": "overloaded"}
        else:
            assert body == {"error": str(error)}


def test_tei_and_hf_error_types():
    def error_type(kind, path="/embed"):
        return json.loads(error_shapes.render(ERRORS[kind], path).body)["error_type"]
    assert {error_type(k) for k in ("invalid_request", "invalid_json", "input_too_long", "wrong_task")} == \
        {"validation"}
    assert error_type("overloaded") == "overloaded" and error_type("unavailable") == "unhealthy"
    assert error_type("wrong_task", "/generate") == "not_found"


def test_families_by_path():
    assert [error_shapes.family(p) for p in ("/v1/models/m:predict", "/v2/health/ready", "/metrics", "/nope")] == \
        ["kserve"] * 4
    assert [error_shapes.family(p) for p in ("/embed", "/predict", "/rerank", "/tokenize", "/decode", "/info")] == \
        ["tei"] * 6
    assert [error_shapes.family(p) for p in ("/", "/generate", "/generate_stream")] == ["hf"] * 3
    assert [error_shapes.family(p) for p in ("/openai/v1/models", "/openai/v1/chat/completions")] == ["openai"] * 2
    assert [error_shapes.family(p) for p in ("/v1/rerank", "/openai/v1/rerank")] == ["rerank"] * 2


def test_unexpected_errors_are_internal_and_say_nothing():
    response = error_shapes.render(RuntimeError("secret /path/to/file line 3"), "/embed")
    body = json.loads(response.body)
    assert response.status_code == 500 and body == {"error": error_shapes.INTERNAL_MESSAGE, "error_type": "backend"}
    assert error_shapes.grpc_status(KeyError("x")) == (StatusCode.INTERNAL, error_shapes.INTERNAL_MESSAGE)


def test_other_libraries_errors_get_kinds():
    kinds = {
        kserve_errors.InvalidInput("bad"): ("invalid_request", 400),
        kserve_errors.ModelNotFound("nope"): ("model_not_found", 404),
        kserve_errors.ModelNotReady("m"): ("unavailable", 503),
        kserve_errors.ServerNotReady(): ("unavailable", 503),
        RequestValidationError([{"loc": ("body", "input"), "msg": "Field required"}]): ("invalid_request", 400),
        HTTPException(405, "Method Not Allowed"): ("invalid_request", 405),
        HTTPException(404, "Not Found"): ("model_not_found", 404),
        NotImplementedError("Model versioning not supported yet."): ("invalid_request", 400),
        NotImplementedError("something else"): ("not_implemented", 501),
    }
    for error, (kind, status) in kinds.items():
        assert error_shapes.problem(error, "/v2/models/m/infer").kind == kind, error
        assert error_shapes.render(error, "/v2/models/m/infer").status_code == status, error
    validation = error_shapes.problem(RequestValidationError([{"loc": ("body", "input"), "msg": "Field required"}]))
    assert validation.message == "invalid request: input: Field required"
    assert "versions are not supported" in error_shapes.problem(NotImplementedError("x"), "/v2/models/m/versions/1").message


def test_a_body_too_large_that_fastapi_wrapped_is_still_413():
    wrapped = HTTPException(400, "There was an error parsing the body")
    wrapped.__cause__ = errors.BodyTooLarge("request body is larger than the limit of 10 bytes")
    response = error_shapes.render(wrapped, "/openai/v1/embeddings")
    assert response.status_code == 413 and "limit of 10 bytes" in json.loads(response.body)["error"]["message"]


def test_grpc_codes_for_the_same_kinds():
    assert {kind: error_shapes.grpc_status(error)[0] for kind, error in ERRORS.items()} == {
        "invalid_request": StatusCode.INVALID_ARGUMENT, "invalid_json": StatusCode.INVALID_ARGUMENT,
        "input_too_long": StatusCode.INVALID_ARGUMENT, "wrong_task": StatusCode.INVALID_ARGUMENT,
        "model_not_found": StatusCode.NOT_FOUND, "body_too_large": StatusCode.RESOURCE_EXHAUSTED,
        "overloaded": StatusCode.RESOURCE_EXHAUSTED, "unavailable": StatusCode.UNAVAILABLE}
    assert error_shapes.grpc_status(kserve_errors.InvalidInput("bad")) == (StatusCode.INVALID_ARGUMENT, "bad")
    assert error_shapes.grpc_status(NotImplementedError("no"))[0] == StatusCode.UNIMPLEMENTED


def test_client_text_in_the_log_is_escaped(caplog):
    caplog.set_level("INFO", logger="hfserve")
    error_shapes.log(kserve_errors.ModelNotFound("x\n2026-12-04 kserve INFO forged"), "GET", "/v2/models/x\n/ready",
                     404, "model_not_found")
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
    assert caplog.records[0].exc_info is None
