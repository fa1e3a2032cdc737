"""DeepSpeech 0.7.4's CTC decoder (ds-ctcdecoder from PyPI) as the oracle of the scorer vocabulary: it embeds
OpenFST 1.6.7 and the fill_dictionary/save_dictionary code that Coqui STT 1.4 kept, and, unlike Coqui's own
decoder, takes the vocabulary from Python. Its wheels are for Python 3.5 to 3.8 only, so it is installed
once into its own virtual environment (cached between runs) and run as a subprocess (save_dictionary.py).
Tests that need it skip, saying why, only where no Python 3.8 exists."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile

import pytest

DECODER_PACKAGES = ["ds-ctcdecoder==0.7.4", "numpy==1.24.4"]  # the wheel imports numpy
CACHE = os.environ.get(
    "COQUI_STT_DS_DECODER_VENV",
    os.path.join(os.path.expanduser("~"), ".cache", "coqui-stt-torch", "ds-ctcdecoder-0.7.4-py3.8"),
)
SAVE_DICTIONARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "save_dictionary.py")


def python38() -> str | None:
    """A working Python 3.8: pyenv's, else one on PATH (a pyenv shim on PATH may not run)."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")), reverse=True)
    candidates += [found] if (found := shutil.which("python3.8")) else []
    for candidate in candidates:
        done = subprocess.run([candidate, "-c", "import venv"], capture_output=True)
        if done.returncode == 0:
            return candidate
    return None


def decoder_python() -> str:
    """The Python of the cached environment holding ds-ctcdecoder 0.7.4; built on first use."""
    python = os.path.join(CACHE, "bin", "python")
    if os.path.isfile(python):
        return python
    base = python38()
    if base is None:
        pytest.skip("DeepSpeech 0.7.4's decoder (the trie writer's oracle) needs Python 3.8, and this machine has none")
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    building = tempfile.mkdtemp(prefix=".building-", dir=os.path.dirname(CACHE))
    try:
        subprocess.run([base, "-m", "venv", building], check=True, capture_output=True)
        pip = [os.path.join(building, "bin", "python"), "-m", "pip", "install", "--quiet", *DECODER_PACKAGES]
        done = subprocess.run(pip, capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"installing {' '.join(DECODER_PACKAGES)} for Python 3.8 failed:\n{done.stderr}")
        try:
            os.rename(building, CACHE)
        except OSError:  # another test process built it meanwhile
            if not os.path.isfile(python):
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
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
