"""Coqui STT / DeepSpeech training on PyTorch: the same commands, checkpoints and data formats."""

import hashlib
import os

# OpenMP threads that wait by sleeping rather than spinning (unless the user chose): on a shared machine a
# spinning thread whose core is busy with another process stalls every parallel region (the README's
# LDC93S1 job ran 2.4x slower beside one busy process; passive, 1.0x). It only works if set before torch
# starts OpenMP, that is before torch is imported: here, the first thing any entry point imports.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _numba_cache_folder() -> str:
    """Where numba keeps the compiled beam search: a folder named for the sources it is compiled from. numba
    checks a cached function against its own file only, and the search inlines functions of other files: after
    an edit, or an upgrade that keeps a file's time, their stale code would run."""
    decoding = os.path.join(os.path.dirname(os.path.abspath(__file__)), "decoding")
    digest = hashlib.sha256()
    for name in sorted(os.listdir(decoding)):
        if name.endswith(".py"):
            with open(os.path.join(decoding, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read())
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(home, "coqui-stt-torch", "numba", digest.hexdigest()[:16])


# (before numba is imported, which reads it once; a user's own NUMBA_CACHE_DIR stands)
os.environ.setdefault("NUMBA_CACHE_DIR", _numba_cache_folder())

__version__ = "0.1.0"
