"""DeepSpeech 0.7.4's CTC decoder (ds-ctcdecoder from PyPI) as the oracle of the scorer vocabulary: it embeds
OpenFST 1.6.7 and the fill_dictionary/save_dictionary code that Coqui STT 1.4 kept, and, unlike Coqui's own
decoder, takes the vocabulary from Python. Its wheels are for Python 3.5 to 3.8 only, so it is installed
once into its own virtual environment (cached between runs) and run as a subprocess (save_dictionary.py).
Tests that need it skip, saying why, only where no Python 3.8 exists."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import pytest

from tests.helpers import cached_environment

DECODER_PACKAGES = ["ds-ctcdecoder==0.7.4", "numpy==1.24.4"]  # the wheel imports numpy
CACHE = os.environ.get(
    "COQUI_STT_DS_DECODER_VENV",
    os.path.join(os.path.expanduser("~"), ".cache", "coqui-stt-torch", "ds-ctcdecoder-0.7.4-py3.8"),
)
SAVE_DICTIONARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "save_dictionary.py")


def decoder_python() -> str:
    """The Python of the cached environment holding ds-ctcdecoder 0.7.4; built on first use."""
    python = cached_environment(CACHE, "3.8", DECODER_PACKAGES)
    if python is None:
        pytest.skip("DeepSpeech 0.7.4's decoder (the trie writer's oracle) needs Python 3.8, and this machine has none")
    return python


def save_dictionaries(jobs: list[dict]) -> None:
    """Run save_dictionary.py's jobs (see its docstring) in one decoder process."""
    with tempfile.TemporaryDirectory() as directory:
        job_file = os.path.join(directory, "jobs.json")
        with open(job_file, "w") as f:
            json.dump(jobs, f)
        done = subprocess.run(
            [decoder_python(), SAVE_DICTIONARY, job_file], capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise AssertionError(f"DeepSpeech 0.7.4's decoder failed:\n{done.stderr}")
