"""Trained models written for Coqui's native client (TFLite) and for onnxruntime."""
