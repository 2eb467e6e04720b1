"""Model execution: the only place that runs a forward pass or generation (torch, or ONNX Runtime for encoders)."""
