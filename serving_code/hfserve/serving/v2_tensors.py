"""Typed V2 output tensors (tasks/handlers.py V2Output) as kserve's InferOutput, for every kserve model; and an
embedding model's vectors as the typed tensors V2's `embedding_types` asks for."""

import numpy as np
from kserve import InferOutput

from ..tasks.embedding import quantize
from ..tasks.handlers import V2Output

NUMPY_TYPES = {"FP32": np.float32, "INT8": np.int8, "UINT8": np.uint8}
# embedding_types -> (tensor name, V2 datatype); binary / ubinary are the signs packed 8 to a byte
EMBEDDING_TENSORS = {"float": ("embedding", "FP32"), "int8": ("embedding_int8", "INT8"),
                     "uint8": ("embedding_uint8", "UINT8"), "binary": ("embedding_binary", "INT8"),
                     "ubinary": ("embedding_ubinary", "UINT8")}


def to_infer_output(tensor: V2Output) -> InferOutput:
    if tensor.datatype == "BYTES":
        data = np.array([s.encode("utf-8") for s in tensor.data], dtype=np.object_).reshape(tensor.shape)
    else:
        data = np.asarray(tensor.data, dtype=NUMPY_TYPES.get(tensor.datatype, np.float32)).reshape(tensor.shape)
    output = InferOutput(name=tensor.name, shape=tensor.shape, datatype=tensor.datatype)
    output.set_data_from_numpy(data, binary_data=False)
    return output


def embedding_outputs(vectors: list[list[float]], types: tuple[str, ...]) -> list[V2Output]:
    """One tensor per requested type, [texts, width] (packed: [texts, ceil(width / 8)]), in the order asked."""
    matrix = np.asarray(vectors, dtype=np.float32)
    tensors = []
    for kind in types:
        name, datatype = EMBEDDING_TENSORS[kind]
        values = np.asarray(quantize(matrix, kind), dtype=NUMPY_TYPES[datatype])
        tensors.append(V2Output(name, datatype, list(values.shape), values.reshape(-1).tolist()))
    return tensors
