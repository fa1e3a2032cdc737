"""File formats of the TensorFlow world, read and written byte by byte so that no TensorFlow is needed:
protocol-buffer wire format, CRC32C, TF V2 checkpoints and their state files, TensorBoard event files, and
safetensors read one tensor at a time."""
