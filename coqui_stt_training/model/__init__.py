"""The DeepSpeech network, its features, alphabet, loss and optimiser."""
