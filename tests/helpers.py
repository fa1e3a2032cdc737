"""What the tests share: where the data is, and running an entry point in-process as a user would."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "data", "smoke_test")
ALPHABET = os.path.join(ROOT, "data", "alphabet.txt")  # Coqui's English alphabet
LDC = os.path.join(SMOKE, "ldc93s1.csv")  # one utterance, 16 kHz
LDC_WAV = os.path.join(SMOKE, "LDC93S1.wav")
LDC_SENTENCE = "she had your dark suit in greasy wash water all year"
RUSSIAN = os.path.join(SMOKE, "russian_sample_data")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "coqui-1.4.0")  # outputs of the genuine Coqui STT 1.4.0
SHARED = os.path.join(os.path.dirname(ROOT), "shared")  # the project's bigger data, beside the repository

# The README's LDC93S1 model (characters).
README_FLAGS = ["--n_hidden", "100", "--epochs", "300", "--learning_rate", "0.001", "--dropout_rate", "0.05",
                "--show_progressbar", "false"]  # fmt: skip


def run(main, argv: list[str], capsys) -> tuple[int, str]:
    """Run an entry point's main(argv) in this process; return its exit status and stdout + stderr."""
    try:
        main(argv)
        status = 0
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return status, out.out + out.err


def wait_for(child, text: str) -> str:
    """A child process's output up to the first line holding `text`; its whole output in an AssertionError
    if it ends without one."""
    lines = []
    for line in child.stdout:
        lines.append(line)
        if text in line:
            return "".join(lines)
    raise AssertionError("".join(lines))


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def digest(directory: str) -> dict[str, str]:
    """Every file of a directory (not its subdirectories) by name, with its hash."""
    return {
        name: sha256(os.path.join(directory, name))
        for name in sorted(os.listdir(directory))
        if os.path.isfile(os.path.join(directory, name))
    }


def repeated_csv(directory, copies: int = 5, name: str = "train.csv") -> str:
    """LDC93S1 several times over (distinct sizes keep the order stable): several steps per epoch."""
    rows = "".join(f"{LDC_WAV},{93638 + i},{LDC_SENTENCE}\n" for i in range(copies))
    path = os.path.join(str(directory), name)
    with open(path, "w", encoding="utf-8") as f:
        f.write("wav_filename,wav_filesize,transcript\n" + rows)
    return path


def pyenv_python(version: str) -> str | None:
    """A working Python `version` (such as "3.10"): pyenv's, else one on PATH (a pyenv shim on PATH may not run)."""
    pattern = os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")
    candidates = sorted(glob.glob(pattern), reverse=True)
    candidates += [found] if (found := shutil.which(f"python{version}")) else []
    for candidate in candidates:
        done = subprocess.run([candidate, "-c", "import venv"], capture_output=True)
        if done.returncode == 0:
            return candidate
    return None


def cached_environment(cache: str, version: str, packages: list[str]) -> str | None:
    """The Python of a virtual environment of Python `version` holding `packages`, kept at `cache` between runs
    and built on first use: in a temporary folder beside it, renamed into place when complete, so that an
    interrupted build or a second test process building it at the same time leaves a working one or none.
    None where no such Python exists (the caller skips, saying what needs it)."""
    python = os.path.join(cache, "bin", "python")
    if os.path.isfile(python):
        return python
    base = pyenv_python(version)
    if base is None:
        return None
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    building = tempfile.mkdtemp(prefix=".building-", dir=os.path.dirname(cache))
    try:
        subprocess.run([base, "-m", "venv", building], check=True, capture_output=True)
        pip = [os.path.join(building, "bin", "python"), "-m", "pip", "install", "--quiet", *packages]
        done = subprocess.run(pip, capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"installing {' '.join(packages)} for Python {version} failed:\n{done.stderr}")
        # venv writes its own path into its scripts; the interpreter symlink works from anywhere, and only it is used
        try:
            os.rename(building, cache)
        except OSError:  # another test process built it meanwhile
            if not os.path.isfile(python):
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return python
