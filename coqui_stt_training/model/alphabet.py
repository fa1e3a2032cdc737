"""Alphabets: the label set of the output layer (blank excluded; it is the last class).

File format as Coqui's native Alphabet (docs/compatibility.md, "Alphabets"): one label per line, taken
literally (no trimming), lines split on LF, CRLF or CR, `#` starts a comment, a line of exactly `\\#` is
the label "#", empty lines are skipped. Bytes mode maps label n to UTF-8 byte n+1.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import ClassVar

from ..system import log
from ..system.errors import UserError

_HEADER = (
    "# Each line in this file represents the Unicode codepoint (UTF-8 encoded)\n"
    "# associated with a numeric index.\n"
    "# A line that starts with # is a comment. You can escape it with \\# if you wish\n"
    "# to use '#' in the Alphabet.\n"
)
_FOOTER = "# The last (non-comment) line needs to end with a newline.\n"


class AlphabetError(UserError):
    pass


@dataclass
class Alphabet:
    labels: list[str]
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self._index = {}
        for i, label in enumerate(self.labels):
            if label in self._index:
                raise AlphabetError(f"duplicate label {label!r} in alphabet")
            self._index[label] = i

    is_bytes = False

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def space_index(self) -> int | None:
        return self._index.get(" ")

    def missing_characters(self, text: str) -> list[str]:
        return sorted({c for c in text if c not in self._index})

    def encode(self, text: str) -> list[int]:
        missing = self.missing_characters(text)
        if missing:
            raise AlphabetError(f"Alphabet cannot encode {text!r}: missing characters {missing}")
        return [self._index[c] for c in text]

    def decode(self, labels) -> str:
        return "".join(self.labels[i] for i in labels)

    def serialize_text(self) -> str:
        body = "".join(("\\#" if label == "#" else label) + "\n" for label in self.labels)
        return _HEADER + body + _FOOTER


class UTF8Alphabet:
    """255 labels; label n is the byte n+1 (NUL is never produced)."""

    is_bytes = True
    size = 255
    space_index = ord(" ") - 1
    labels: ClassVar[list[str]] = [bytes([i + 1]).decode("latin-1") for i in range(255)]

    def missing_characters(self, text: str) -> list[str]:
        return ["\\x00"] if "\0" in text else []

    def encode(self, text: str) -> list[int]:
        return [b - 1 for b in text.encode("utf-8")]

    def decode(self, labels) -> str:
        return bytes(i + 1 for i in labels).decode("utf-8", errors="replace")

    def serialize_text(self) -> str:
        raise AlphabetError("a bytes-mode alphabet has no alphabet.txt")


AnyAlphabet = Alphabet | UTF8Alphabet


def alphabet_record(alphabet: AnyAlphabet) -> str | list[str]:
    """How a run state records an alphabet, to recognise it later."""
    return "UTF-8 bytes" if alphabet.is_bytes else list(alphabet.labels)


def alphabet_from_record(record: str | list[str]) -> AnyAlphabet:
    """The alphabet a run state recorded (alphabet_record)."""
    return UTF8Alphabet() if record == "UTF-8 bytes" else Alphabet(list(record))


def serialize_binary(alphabet: AnyAlphabet) -> bytes:
    """Coqui's binary Alphabet::Serialize, which its exported graphs embed: uint16 count, then per label
    its uint16 index, uint16 byte length and bytes. Bytes mode is Coqui's UTF8Alphabet: 255 labels, label
    i the single byte i + 1."""
    labels = [bytes([i + 1]) for i in range(255)] if alphabet.is_bytes else [s.encode("utf-8") for s in alphabet.labels]
    out = [len(labels).to_bytes(2, "little")]
    for i, label in enumerate(labels):
        out.append(i.to_bytes(2, "little") + len(label).to_bytes(2, "little") + label)
    return b"".join(out)


def deserialize_binary(data: bytes, source: str) -> AnyAlphabet:
    """The alphabet of serialize_binary's bytes (Coqui's Alphabet::Deserialize)."""
    labels: dict[int, bytes] = {}
    if len(data) < 2:
        raise AlphabetError(f"{source}: serialised alphabet shorter than its count")
    count, position = int.from_bytes(data[:2], "little"), 2
    for _ in range(count):
        if position + 4 > len(data):
            raise AlphabetError(f"{source}: serialised alphabet cut short")
        index = int.from_bytes(data[position : position + 2], "little")
        length = int.from_bytes(data[position + 2 : position + 4], "little")
        if position + 4 + length > len(data):
            raise AlphabetError(f"{source}: serialised alphabet cut short")
        labels[index] = data[position + 4 : position + 4 + length]
        position += 4 + length
    if sorted(labels) != list(range(count)):
        raise AlphabetError(f"{source}: the serialised alphabet does not number its labels 0..{count - 1}")
    ordered = [labels[i] for i in range(count)]
    if ordered == [bytes([i + 1]) for i in range(255)]:
        return UTF8Alphabet()
    try:
        return Alphabet([label.decode("utf-8") for label in ordered])
    except UnicodeDecodeError:
        raise AlphabetError(f"{source}: a label of the serialised alphabet is not UTF-8") from None
    except AlphabetError as e:
        raise AlphabetError(f"{source}: {e}") from None


def parse_alphabet(text: str, source: str = "alphabet") -> Alphabet:
    labels = []
    for line in re.split(r"\r\n|\n|\r", text):
        if line == "\\#":
            labels.append("#")
        elif line.startswith("#") or line == "":
            continue
        else:
            labels.append(line)
    if not labels:
        raise AlphabetError(f"{source}: the alphabet has no labels")
    for i, label in enumerate(labels):
        if len(label) > 1:  # accepted, as Coqui does, but say why it will never be used
            nfc = unicodedata.normalize("NFC", label)
            hint = (
                f"it is {nfc!r} in Unicode NFD: normalise the alphabet (and the transcripts) to NFC"
                if len(nfc) == 1
                else "split it into its code points, or use --bytes_output_mode"
            )
            log.warn_once(
                f"{source}: label {i} {label!r} is {len(label)} code points; transcripts are matched one code "
                f"point at a time, so it can never match ({hint})"
            )
    try:
        return Alphabet(labels)
    except AlphabetError as e:
        raise AlphabetError(f"{source}: {e}") from None


def load_alphabet(path: str) -> Alphabet:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise AlphabetError(f"{path}: cannot read alphabet file ({e.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Windows editors write one) is not a label
    except UnicodeDecodeError as e:
        raise AlphabetError(f"{path}: not UTF-8 (byte {e.start})") from None
    return parse_alphabet(text, path)


def alphabet_from_transcripts(transcripts) -> Alphabet:
    """Coqui's generated alphabet: the sorted set of every character in the data."""
    return Alphabet(sorted({c for t in transcripts for c in t}))
