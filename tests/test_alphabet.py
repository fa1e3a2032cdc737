import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coqui_stt_training.model.alphabet import (
    Alphabet,
    AlphabetError,
    UTF8Alphabet,
    alphabet_from_transcripts,
    load_alphabet,
    parse_alphabet,
)
from tests.helpers import ALPHABET, FIXTURES, RUSSIAN, SMOKE


@pytest.mark.parametrize("name", ["macos", "unix", "windows"])
def test_line_endings(name):
    alphabet = load_alphabet(os.path.join(SMOKE, "alphabet_line_endings", f"alphabet_{name}.txt"))
    assert alphabet.labels == ["a", "b", "c"]
    assert alphabet.encode("abc") == [0, 1, 2]
    assert alphabet.decode([0, 1, 2]) == "abc"


def test_english_alphabet():
    alphabet = load_alphabet(ALPHABET)
    assert alphabet.size == 28
    assert alphabet.space_index == 0
    assert alphabet.encode("a z'") == [1, 0, 26, 27]


def test_russian_alphabet():
    alphabet = load_alphabet(os.path.join(RUSSIAN, "alphabet.ru"))
    assert alphabet.size == 34
    assert alphabet.labels[:4] == [" ", "о", "е", "а"]
    assert alphabet.labels[-1] == "ъ"


def test_format_rules():
    alphabet = parse_alphabet("# comment\n\\#\n\n x\n \nb\r\nc\rd")
    assert alphabet.labels == ["#", " x", " ", "b", "c", "d"]  # no trimming; a last line without newline counts
    assert alphabet.space_index == 2


def test_serialisation_matches_coqui_byte_for_byte():
    with open(os.path.join(FIXTURES, "ldc93s1-h100-e20", "checkpoint", "alphabet.txt"), encoding="utf-8") as f:
        written_by_coqui = f.read()
    assert load_alphabet(ALPHABET).serialize_text() == written_by_coqui
    with_hash = Alphabet(["#", "a"])
    assert parse_alphabet(with_hash.serialize_text()).labels == ["#", "a"]


def test_errors():
    alphabet = load_alphabet(ALPHABET)
    assert alphabet.missing_characters("hello, World") == [",", "W"]
    with pytest.raises(AlphabetError, match="missing characters"):
        alphabet.encode("hello, World")
    with pytest.raises(AlphabetError, match="no labels"):
        parse_alphabet("# only a comment\n")
    with pytest.raises(AlphabetError, match="duplicate label 'a'"):
        parse_alphabet("a\nb\na\n")
    with pytest.raises(AlphabetError, match=r"nope\.txt: cannot read"):
        load_alphabet("nope.txt")  # relative to the working directory, where there is none


def test_non_utf8_alphabet(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("a\né\n".encode("latin-1"))
    with pytest.raises(AlphabetError, match=r"latin1\.txt: not UTF-8"):
        load_alphabet(str(path))


def test_bytes_mode():
    alphabet = UTF8Alphabet()
    labels = alphabet.encode("ёж a")
    assert labels == [b - 1 for b in "ёж a".encode()]
    assert alphabet.size == 255
    assert alphabet.space_index == 31
    assert alphabet.decode(labels) == "ёж a"


def test_generated_alphabet_is_sorted_set():
    assert alphabet_from_transcripts(["ba c", "ab"]).labels == [" ", "a", "b", "c"]


# ---- fuzzing: random bytes give AlphabetError or an alphabet, never a crash --------------------------


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.sampled_from(["a", "#", "\\#", "\n", "\r\n", "\r", " ", "é", "\ufeff", "\x00", "ab"]), max_size=40
        ).map(lambda parts: "".join(parts).encode()),
    )
)
def test_fuzz_alphabet_reader(tmp_path, content):
    path = tmp_path / "alphabet.txt"
    path.write_bytes(content)
    try:
        alphabet = load_alphabet(str(path))
    except AlphabetError as e:
        assert str(e).startswith(str(path))
        return
    assert alphabet.size == len(set(alphabet.labels))
    assert alphabet.size >= 1
    text = "".join(label for label in alphabet.labels if len(label) == 1)  # longer ones never match (warned)
    assert alphabet.decode(alphabet.encode(text)) == text
    assert parse_alphabet(alphabet.serialize_text()).labels == alphabet.labels
