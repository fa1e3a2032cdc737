"""TensorFlow's checkpoint state files (`checkpoint`, and Coqui's `best_dev_checkpoint`): text-format
protocol buffers naming the newest checkpoint prefix and every kept one, paths relative to the file's folder."""

from __future__ import annotations

import os
import re

from ..system.atomic_files import write_file_atomically
from .protobuf import FormatError
from .tf_bundle import TFCheckpointError

_STATE_LINE = re.compile(r"""\s*(\w+)\s*:\s*(.*?)\s*""")
_QUOTED = re.compile(r"""(["'])((?:(?!\1)[^\\]|\\.)*)\1""")
_ESCAPES = {"n": 10, "t": 9, "r": 13, "a": 7, "b": 8, "f": 12, "v": 11, "\\": 92, "'": 39, '"': 34, "?": 63}
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))")


def _unescape(text: str) -> str:
    """Undo text-format C escaping; non-ASCII path bytes arrive as octal escapes of their UTF-8."""
    raw, pos = bytearray(), 0
    for match in _ESCAPE.finditer(text):
        raw += text[pos : match.start()].encode()
        octal, hexa, char = match.groups()
        if char is not None and char not in _ESCAPES:
            raise FormatError(f"unknown escape \\{char}")
        code = int(octal, 8) if octal else int(hexa, 16) if hexa else _ESCAPES[str(char)]
        if code > 0xFF:
            raise FormatError(f"escape {match.group()} is not a byte")
        raw.append(code)
        pos = match.end()
    raw += text[pos:].encode()
    return raw.decode()


_TEXT_ESCAPES = {ord("\\"): "\\\\", ord('"'): '\\"', ord("'"): "\\'", 10: "\\n", 13: "\\r", 9: "\\t"}


def _escape(text: str) -> str:
    # bytes outside printable ASCII become octal escapes, as TF's text_format writes them
    return "".join(_TEXT_ESCAPES.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\{b:03o}") for b in text.encode())


def _parse_state_file(path: str) -> tuple[str | None, list[str]] | None:
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise TFCheckpointError(f"{path}: cannot read checkpoint state file ({e})") from None
    directory = os.path.dirname(path)
    latest, every = None, []
    try:
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            match = _STATE_LINE.fullmatch(line)
            if not match:
                raise FormatError(f"line {number} is not 'field: value'")
            field, value = match.groups()
            if field not in ("model_checkpoint_path", "all_model_checkpoint_paths"):
                continue  # e.g. the timestamps newer TF versions add
            quoted = _QUOTED.fullmatch(value)
            if not quoted:
                raise FormatError(f"line {number}: {field} is not a quoted string")
            resolved = os.path.join(directory, _unescape(quoted.group(2)))
            if field == "model_checkpoint_path":
                latest = resolved
            else:
                every.append(resolved)
    except (FormatError, UnicodeDecodeError) as e:
        raise TFCheckpointError(f"{path}: {e}") from None
    return latest, every


def read_state_file(path: str) -> str | None:
    """The newest checkpoint prefix a state file names (relative paths taken from its directory)."""
    state = _parse_state_file(path)
    if state is None:
        return None
    if state[0] is None:
        raise TFCheckpointError(f"{path}: checkpoint state file has no model_checkpoint_path")
    return state[0]


def read_state_file_all(path: str) -> list[str]:
    state = _parse_state_file(path)
    return [] if state is None else state[1]


def write_state_file(path: str, latest_prefix: str, all_prefixes: list[str]) -> None:
    """Write a state file as TF's Saver does; prefixes inside its directory are stored relative."""
    directory = os.path.dirname(os.path.abspath(path))

    def stored(prefix: str) -> str:
        relative = os.path.relpath(os.path.abspath(prefix), directory)
        inside = relative != os.pardir and not relative.startswith(os.pardir + os.sep)
        return relative if inside else os.path.abspath(prefix)

    every = list(all_prefixes)
    if not every or os.path.abspath(every[-1]) != os.path.abspath(latest_prefix):
        every.append(latest_prefix)  # TF keeps the latest as the last of all paths
    lines = [f'model_checkpoint_path: "{_escape(stored(latest_prefix))}"']
    lines += [f'all_model_checkpoint_paths: "{_escape(stored(p))}"' for p in every]
    write_file_atomically(path, "\n".join(lines) + "\n")
