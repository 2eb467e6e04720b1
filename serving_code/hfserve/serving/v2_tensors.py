"""Typed V2 output tensors (tasks/handlers.py V2Output) as kserve's InferOutput, for every kserve model."""

import numpy as np
from kserve import InferOutput

from ..tasks.handlers import V2Output


def to_infer_output(tensor: V2Output) -> InferOutput:
    if tensor.datatype == "BYTES":
        data = np.array([s.encode("utf-8") for s in tensor.data], dtype=np.object_).reshape(tensor.shape)
    else:
        data = np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
    output = InferOutput(name=tensor.name, shape=tensor.shape, datatype=tensor.datatype)
    output.set_data_from_numpy(data, binary_data=False)
    return output
