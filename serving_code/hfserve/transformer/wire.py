"""The few Open Inference Protocol (Triton `inference.GRPCInferenceService`) messages the transformer needs,
encoded and decoded by hand on the protobuf wire format.

Why not generated stubs: tritonclient's `grpc_service_pb2` and kserve's `grpc_predict_v2_pb2` both register the
`inference.*` messages in protobuf's default descriptor pool, so a process that imports both (the transformer
runs kserve's servers; tests and tools use tritonclient) fails with "duplicate symbol 'inference.ServerLiveRequest'".
Raw bytes over `grpc.aio` generic calls avoid both and carry tensors as binary `raw_*_contents`.

Field numbers (grpc_service.proto / model_config.proto):
  ModelReadyRequest{name=1}            ModelReadyResponse{ready=1}
  ModelConfigRequest{name=1}           ModelConfigResponse{config=1: ModelConfig{max_batch_size=4, input=5{name=1},
                                                                                  output=6{name=1}}}
  ModelInferRequest{model_name=1, inputs=5: {name=1, datatype=2, shape=3}, outputs=6: {name=1},
                    raw_input_contents=7}
  ModelInferResponse{outputs=5: {name=1, datatype=2, shape=3}, raw_output_contents=6}
"""

from __future__ import annotations

import numpy as np

SERVICE = "/inference.GRPCInferenceService/"
NUMPY_TYPES = {"FP32": "<f4", "FP16": "<f2", "BF16": None, "FP64": "<f8", "INT64": "<i8", "INT32": "<i4",
               "INT8": "i1", "UINT8": "u1", "BOOL": "?"}


class WireError(ValueError):
    pass


# --- encoding ---------------------------------------------------------------------------------------------------------
def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: two's complement, 10 bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _str_field(number: int, text: str) -> bytes:
    return _bytes_field(number, text.encode("utf-8"))


def encode_name_request(name: str) -> bytes:
    """ModelReadyRequest / ModelConfigRequest / ModelStatisticsRequest: {name=1}."""
    return _str_field(1, name)


def encode_infer_request(model_name: str, inputs: dict[str, np.ndarray], output_names: list[str] | tuple[str, ...],
                         datatype: str = "INT64") -> bytes:
    dtype = NUMPY_TYPES[datatype]
    parts = [_str_field(1, model_name)]
    raws = []
    for name, array in inputs.items():
        array = np.ascontiguousarray(array, dtype=dtype)
        shape = b"".join(_varint(int(d)) for d in array.shape)
        tensor = _str_field(1, name) + _str_field(2, datatype) + _bytes_field(3, shape)
        parts.append(_bytes_field(5, tensor))
        raws.append(_bytes_field(7, array.tobytes()))
    for name in output_names:
        parts.append(_bytes_field(6, _str_field(1, name)))
    return b"".join(parts + raws)


# --- decoding ---------------------------------------------------------------------------------------------------------
def _read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes | memoryview):
    """(field number, wire type, value) for each field of a serialized message; value is int or a memoryview."""
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        key, pos = _read_varint(view, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(view, pos)
        elif wire == 1:
            value, pos = view[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _read_varint(view, pos)
            if pos + length > len(view):
                raise WireError("truncated field")
            value, pos = view[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = view[pos:pos + 4], pos + 4
        else:
            raise WireError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _text(value) -> str:
    return bytes(value).decode("utf-8")


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _tensor_header(message) -> tuple[str, str, list[int]]:
    name, datatype, shape = "", "", []
    for number, wire, value in fields(message):
        if number == 1 and wire == 2:
            name = _text(value)
        elif number == 2 and wire == 2:
            datatype = _text(value)
        elif number == 3 and wire == 2:  # packed
            pos = 0
            while pos < len(value):
                dim, pos = _read_varint(value, pos)
                shape.append(_signed64(dim))
        elif number == 3 and wire == 0:
            shape.append(_signed64(value))
    return name, datatype, shape


def decode_ready_response(data: bytes) -> bool:
    return any(number == 1 and wire == 0 and value for number, wire, value in fields(data))


def decode_model_config_response(data: bytes) -> dict:
    config = b"".join(bytes(v) for n, w, v in fields(data) if n == 1 and w == 2)
    result = {"max_batch_size": 0, "inputs": [], "outputs": []}
    for number, wire, value in fields(config):
        if number == 4 and wire == 0:
            result["max_batch_size"] = _signed64(value)
        elif number in (5, 6) and wire == 2:
            name = next((_text(v) for n, w, v in fields(value) if n == 1 and w == 2), "")
            result["inputs" if number == 5 else "outputs"].append(name)
    return result


def decode_infer_response(data: bytes) -> dict[str, np.ndarray]:
    headers, raws = [], []
    for number, wire, value in fields(data):
        if number == 5 and wire == 2:
            headers.append(_tensor_header(value))
        elif number == 6 and wire == 2:
            raws.append(value)
    if len(raws) != len(headers):
        raise WireError(f"{len(headers)} outputs but {len(raws)} raw output contents")
    outputs = {}
    for (name, datatype, shape), raw in zip(headers, raws):
        dtype = NUMPY_TYPES.get(datatype)
        if dtype is None:
            raise WireError(f"unsupported output datatype {datatype!r} for {name!r}")
        array = np.frombuffer(raw, dtype=dtype).reshape(shape)
        outputs[name] = array.astype(np.float32) if array.dtype.kind == "f" and array.dtype != np.float32 else array
    return outputs
