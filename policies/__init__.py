"""ONNX walking policies: the contract, the runner, and training that exports them."""
