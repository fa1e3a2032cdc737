"""Data sets on disk: CSV, SDB, shards, audio files, Common Voice."""
