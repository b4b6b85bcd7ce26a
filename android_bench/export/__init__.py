"""The network to ship: build it (deploy), convert it to TFLite/ONNX (convert), channel-last rewrites (layout), the fidelity check and op lists."""
