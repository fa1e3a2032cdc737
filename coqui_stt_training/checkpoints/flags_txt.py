"""A checkpoint directory's flags.txt: the flags of the run that made it, which a run loading from it reads
for n_hidden (and bytes mode). Coqui writes JSON; DeepSpeech 0.x wrote absl's `--name=value` lines, which
Coqui ignored and we read too."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from ..system import log


def read_flags_file(directory: str) -> dict[str, Any] | None:
    """A checkpoint directory's flags.txt (the flags of the run that made it): Coqui's JSON, or DeepSpeech's
    older absl flag file (`--n_hidden=2048` lines), which Coqui ignored. None if there is none; anything
    else is named in a warning and ignored, as Coqui ignores it, so --n_hidden is not taken from it."""
    path = os.path.join(directory, "flags.txt") if directory else ""
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        log.warn_once(f"{path}: unreadable ({getattr(e, 'strerror', None) or e}); its flags (n_hidden) are not used")
        return None
    try:
        flags = json.loads(text)
    except ValueError:
        flags = _absl_flags(text)
    if not isinstance(flags, dict):
        log.warn_once(
            f"{path}: neither Coqui's JSON flags nor a DeepSpeech flag file; ignored, so --n_hidden is not taken "
            "from it"
        )
        return None
    return flags


def _absl_flags(text: str) -> dict[str, Any] | None:
    """DeepSpeech 0.x's flags.txt: one `--name=value` per line; integers read as integers."""
    flags: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        match = re.fullmatch(r"--(\w+)=(.*)", line.strip())
        if not match:
            return None
        name, value = match.groups()
        flags[name] = int(value) if re.fullmatch(r"-?\d+", value) else value
    return flags or None
