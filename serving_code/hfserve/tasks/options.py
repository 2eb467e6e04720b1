"""Choices of model execution options, declared without importing torch (the transformer never runs a model)."""

DTYPE_CHOICES = ("auto", "float32", "float16", "bfloat16")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
ENGINE_CHOICES = ("torch", "onnx")
QUANTIZE_CHOICES = ("none", "int8")
