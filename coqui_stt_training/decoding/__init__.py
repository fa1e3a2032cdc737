"""The model's output to text: beam search, the scorer, testing, transcription."""
