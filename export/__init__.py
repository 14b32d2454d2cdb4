"""Build a backbone in torch and export it once to ONNX with a model card."""
