"""Coqui's own runtime as a test oracle: the native client `stt` 1.4.0 and Coqui's decoder package
`coqui_stt_ctcdecoder` 1.4.0 from PyPI, which have wheels for Python 3.10 only, installed once into their own
virtual environment (cached between runs) and run as subprocesses (run_client.py, run_decoder.py). Tests that
need them skip, saying why, only where no Python 3.10 exists."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import numpy as np
import pytest

from tests.helpers import cached_environment

STT_PACKAGES = ["stt==1.4.0", "coqui-stt-ctcdecoder==1.4.0", "numpy==1.26.4"]  # their wheels need a numpy 1.x ABI
CACHE = os.environ.get(
    "COQUI_STT_CLIENT_VENV", os.path.join(os.path.expanduser("~"), ".cache", "coqui-stt-torch", "stt-1.4.0-py3.10")
)
RUN_CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_client.py")
RUN_DECODER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_decoder.py")


def client_python() -> str:
    """The Python of the cached environment holding the native client; built on first use."""
    fresh = not os.path.isfile(os.path.join(CACHE, "bin", "python"))
    python = cached_environment(CACHE, "3.10", STT_PACKAGES)
    if python is None:
        pytest.skip("Coqui's native client (stt 1.4.0) needs Python 3.10, and this machine has none")
    if not fresh:
        add_missing_packages(python)
    return python


def add_missing_packages(python: str) -> None:
    """An environment cached before the decoder package joined the list gets it now."""
    if subprocess.run([python, "-c", "import coqui_stt_ctcdecoder"], capture_output=True).returncode == 0:
        return
    done = subprocess.run([python, "-m", "pip", "install", "--quiet", *STT_PACKAGES], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"installing {' '.join(STT_PACKAGES)} for Python 3.10 failed:\n{done.stderr}")


def coqui_decode(jobs: list[dict], matrices: list[np.ndarray]) -> dict:
    """Coqui's decoder's candidates for each job (see run_decoder.py) on the matrices it names, and its time."""
    with tempfile.TemporaryDirectory() as directory:
        jobs_path, matrices_path, out = (os.path.join(directory, n) for n in ("jobs.json", "m.npz", "out.json"))
        with open(jobs_path, "w", encoding="utf-8") as f:
            json.dump(jobs, f)
        np.savez(matrices_path, **{f"probs_{i}": m for i, m in enumerate(matrices)})
        done = subprocess.run(
            [client_python(), RUN_DECODER, jobs_path, matrices_path, out], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise AssertionError(f"Coqui's decoder failed:\n{done.stderr[-3000:]}")
        with open(out, encoding="utf-8") as f:
            return json.load(f)


def transcribe(model: str, wavs: list[str], scorer: str = "") -> tuple[list[str], list[np.ndarray]]:
    """The native client's transcript of each WAV and the per-frame probabilities its streaming fed its
    decoder, [frames, classes]."""
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "client.npz")
        command = [client_python(), RUN_CLIENT, model, out, *wavs] + (["--scorer", scorer] if scorer else [])
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise AssertionError(f"the native client failed on {model}:\n{done.stderr}")
        with np.load(out) as result:
            transcripts = json.loads(str(result["transcripts"]))
            probabilities = [result[f"probs_{i}"] for i in range(len(wavs))]
    return transcripts, probabilities


RUN_API = os.path.join(os.path.dirname(__file__), "run_api.py")


def client_api(job: dict) -> list[dict]:
    """What the native client's Python API returns for a job (see run_api.py)."""
    with tempfile.TemporaryDirectory() as directory:
        job_path, out = os.path.join(directory, "job.json"), os.path.join(directory, "out.json")
        with open(job_path, "w", encoding="utf-8") as f:
            json.dump(job, f)
        done = subprocess.run([client_python(), RUN_API, job_path, out], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise AssertionError(f"the native client failed on {job['model']}:\n{done.stderr[-3000:]}")
        with open(out, encoding="utf-8") as f:
            return json.load(f)
