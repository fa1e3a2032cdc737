"""Scorer packages written as Coqui writes them: the vocabulary FST byte for byte (against DeepSpeech 0.7.4's
decoder, which holds Coqui's trie code and OpenFST, and against Coqui's own smoke-test packages), the ConstFst
and KenLM binary formats, generate_lm and generate_scorer_package with every refusal, and a package built end
to end from a corpus that the scorer reader loads."""

from __future__ import annotations

import collections
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest

from coqui_stt_training import generate_lm, generate_scorer_package
from coqui_stt_training.decoding.kenlm_tools import LanguageModelError, kenlm_bins, word_statistics
from coqui_stt_training.decoding.scorer import Scorer
from coqui_stt_training.decoding.scorer_package import looks_char_based, package_tail, read_vocabulary
from coqui_stt_training.decoding.vocabulary_fst import spell_vocabulary
from coqui_stt_training.formats import const_fst as cf
from coqui_stt_training.formats.kenlm_binary import read_kenlm_header
from coqui_stt_training.model.alphabet import Alphabet, UTF8Alphabet, load_alphabet
from tests.ds_ctcdecoder import save_dictionaries
from tests.helpers import ALPHABET, ROOT, SHARED, SMOKE, wait_for
from tests.native_client import client_python

WORD_SCORER = os.path.join(SMOKE, "pruned_lm.scorer")
BYTES_SCORER = os.path.join(SMOKE, "pruned_lm.bytes.scorer")
SHARED_SMOKE = os.path.join(SHARED, "data", "smoke_test")  # the vocabularies Coqui built the smoke scorers from
ENGLISH = load_alphabet(ALPHABET)


def bins() -> str:
    try:
        return kenlm_bins("")
    except LanguageModelError:
        pytest.skip("KenLM's programs are not built: python scripts/build_kenlm.py")


def kenlm(tools: str, program: str, *args: str) -> None:
    """Run one of KenLM's programs; a failure fails the test with its output."""
    done = subprocess.run([os.path.join(tools, program), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def lm_part(scorer: str, directory) -> str:
    """The KenLM binary a package was built from: its bytes up to Coqui's block."""
    with open(scorer, "rb") as f:
        data = f.read()
    path = os.path.join(str(directory), os.path.basename(scorer) + ".lm")
    with open(path, "wb") as f:
        f.write(data[: read_kenlm_header(data).end_of_search_offset])
    return path


def defaults(scorer: str) -> tuple[bool, float, float]:
    with open(scorer, "rb") as f:
        data = f.read()
    return struct.unpack_from("<?dd", data, data.index(b"EIRT\x06\0\0\0") + 8)


def corpus(path, sentences: int = 1500, seed: int = 1, letters: str = "abcdefghijklmnopqrstuvwxyz'") -> str:
    """Sentences of Zipf-distributed made-up words: rare words enough for Kneser-Ney's discounts."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 8))) for _ in range(1500)]
    weights = [1 / (i + 1) for i in range(len(words))]
    lines = (" ".join(rng.choices(words, weights, k=rng.randint(4, 10))) for _ in range(sentences))
    path.write_text("\n".join(lines).title() + "\n", encoding="utf-8")  # capitals, which generate_lm lowercases
    return str(path)


LM_FLAGS = ["--top_k", "1000", "--arpa_order", "3", "--max_arpa_memory", "64M", "--arpa_prune", "0|0|1",
            "--binary_a_bits", "255", "--binary_q_bits", "8", "--binary_type", "trie"]  # fmt: skip


# ---------------------------------------------------------------------------------------------------- formats


def test_the_kenlm_header_says_where_coquis_block_starts():
    for scorer, order, model_type in [(WORD_SCORER, 4, "quant_array_trie"), (BYTES_SCORER, 2, "trie")]:
        with open(scorer, "rb") as f:
            data = f.read()
        header = read_kenlm_header(data)
        assert (header.order, header.model_type, header.has_vocabulary) == (order, model_type, False)
        assert header.end_of_search_offset == data.index(b"EIRT")


def test_the_kenlm_header_reader_refuses_what_is_no_kenlm_binary():
    with open(WORD_SCORER, "rb") as f:
        data = f.read()
    cases = {
        b"\\data\\\nngram 1=3\n": "not a KenLM binary",
        b"": "not a KenLM binary",
        data[:1000]: "cut short",
        b"mmap lm http://kheafield.com/code incomplete\n" + bytes(100): "unfinished",
        data[:88] + b"\x04\0\0\0" + data[92:96] + b"\x09" + data[97:]: "model type 9",
    }
    for damaged, message in cases.items():
        with pytest.raises(ValueError, match=message):
            read_kenlm_header(damaged)


@pytest.mark.parametrize("options", [["probing"], ["-p", "2.7", "probing"], ["trie"], ["-q", "8", "trie"],
                                     ["-a", "22", "trie"], ["-a", "255", "-q", "8", "trie"]], ids=" ".join)  # fmt: skip
def test_the_kenlm_header_of_every_kind_of_binary(options, tmp_path):
    """Built with -v, KenLM's data ends the file; without it, the vocabulary strings start where it ends."""
    tools = bins()
    arpa = str(tmp_path / "lm.arpa")
    text = corpus(tmp_path / "corpus.txt", sentences=400)
    kenlm(tools, "lmplz", "--order", "4", "--memory", "32M", "--text", text, "--arpa", arpa, "--discount_fallback",
          "--temp_prefix", str(tmp_path))  # fmt: skip
    for without_strings in (True, False):
        binary = tmp_path / f"lm-{without_strings}.binary"
        kenlm(tools, "build_binary", "-S", "16M", *(["-v"] if without_strings else []), *options, arpa, str(binary))
        data = binary.read_bytes()
        header = read_kenlm_header(data)
        assert header.has_vocabulary is not without_strings
        if without_strings:
            assert header.end_of_search_offset == len(data)
        else:
            assert data[header.end_of_search_offset :].startswith(b"<unk>\0")


def test_const_fst_reads_coquis_vocabularies_and_writes_them_back_byte_for_byte():
    for scorer in (WORD_SCORER, BYTES_SCORER):
        with open(scorer, "rb") as f:
            data = f.read()
        at = data.index(b"EIRT") + 25
        fst, end = cf.read_const_fst(data, at)
        assert end == len(data)
        assert fst.num_states >= 2 and fst.is_final.any() and (fst.ilabel == fst.olabel).all()
        assert cf.write_const_fst(fst, at) == data[at:]


def weighted_fst() -> cf.ConstFst:
    """Three states, epsilons, weights and a final weight: what no vocabulary has, but the format holds."""
    return cf.ConstFst(
        start=1,
        final_weight=np.array([np.inf, 0.5, 0.0], np.float32),
        arc_count=np.array([2, 0, 3], np.int64),
        ilabel=np.array([0, 3, 1, 0, -1], np.int32),
        olabel=np.array([0, 0, 2, 7, 5], np.int32),
        weight=np.array([1.5, 0.0, 2.25, 0.0, 3.0], np.float32),
        next_state=np.array([1, 2, 0, 2, 1], np.int32),
        properties=0x123456789,
    )


@pytest.mark.parametrize("offset", range(16))
def test_const_fst_round_trip_at_every_alignment(offset):
    fst = weighted_fst()
    data = b"\xa5" * offset + cf.write_const_fst(fst, offset)
    back, end = cf.read_const_fst(data, offset)
    assert end == len(data)
    assert back.start == 1 and back.properties == fst.properties
    for name in ("final_weight", "arc_count", "ilabel", "olabel", "weight", "next_state"):
        assert np.array_equal(getattr(back, name), getattr(fst, name)), name
    assert [c.tolist() for c in back.epsilon_counts()] == [[1, 0, 1], [2, 0, 0]]
    # the tables start at multiples of 16 counted from the file's start, not the FST's
    header_end = offset + 4 + 9 + 12 + 8 + 8 + 24
    states_at = header_end + -header_end % 16
    assert data[header_end:states_at] == bytes(states_at - header_end)


def test_const_fst_reads_the_unaligned_version_too():
    aligned = cf.write_const_fst(weighted_fst(), 0)
    header = bytearray(aligned[:65])
    struct.pack_into("<ii", header, 25, cf.UNALIGNED_VERSION, 0)
    unaligned = bytes(header) + aligned[80 : 80 + 60] + aligned[-80:]  # no padding before either table
    fst, end = cf.read_const_fst(unaligned, 0)
    assert end == len(unaligned) and fst.next_state.tolist() == [1, 2, 0, 2, 1]


def test_const_fst_reader_refuses_damage_before_allocating():
    good = cf.write_const_fst(weighted_fst(), 0)

    def patched(fmt: str, at: int, *values) -> bytes:
        data = bytearray(good)
        struct.pack_into(fmt, data, at, *values)
        return bytes(data)

    cases = {
        good[:100]: "need 224 bytes",
        patched("<qq", 49, 2**30, 2**31): "need",  # a header that claims gigabytes, in a 160-byte file
        patched("<q", 41, 3): "start state 3",
        patched("<i", 0, 1234): "magic",
        patched("<i", 4, 9): "type",
        patched("<i", 25, 7): "version 7",
        patched("<i", 29, 1): "symbol tables",
        patched("<I", 80 + 8, 1): "add up",
        patched("<i", 144 + 12, 3): "a state the FST does not have",
        patched("<I", 80 + 12, 0): "epsilon counts",
        b"": "no FST",
    }
    for data, message in cases.items():
        with pytest.raises(ValueError, match=message):
            cf.read_const_fst(data, 0)


# ------------------------------------------------------------------------------------------ the vocabulary FST

SCRIPTS = {
    "latin": "abcdefghijklmnopqrstuvwxyz'",
    "accented": "aeiouynrstléèêëàâäôöûüçñß'",
    "cyrillic": "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
    "cjk": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自可",
    "mixed": "abcdefghijkl'абвгдеж的一是不了😀🎉𝄞é\u0301",
}


def random_case(index: int) -> tuple[str, list[bytes], Alphabet | UTF8Alphabet, float, float, int]:
    """Words from shared stems and suffixes (prefixes and suffixes collide), duplicates, a few special tokens;
    word-mode alphabets lack two of the script's letters and put the space anywhere."""
    rng = random.Random(index)
    script = sorted(SCRIPTS)[index % len(SCRIPTS)]
    chars = SCRIPTS[script]
    size = [3, 20, 75, 300, 1200, 4000][index % 6]
    draw = lambda low, high: "".join(rng.choice(chars) for _ in range(rng.randint(low, high)))
    stems, suffixes = [draw(1, 6) for _ in range(max(1, size // 3))], ["", *(draw(1, 3) for _ in range(5))]
    words = [rng.choice(stems) + rng.choice(suffixes) for _ in range(size)] + [draw(1, 12) for _ in range(size // 10)]
    words += rng.choices(words, k=size // 5) + (["<s>", "</s>", "<unk>"] if index % 3 == 0 else [])
    rng.shuffle(words)
    alphabet: Alphabet | UTF8Alphabet = UTF8Alphabet()
    if index % 2 == 0:
        labels = sorted(set(chars) - set(rng.sample(chars, 2)))
        rng.shuffle(labels)
        labels.insert(rng.randint(0, len(labels)), " ")
        alphabet = Alphabet(labels)
    kind = "bytes" if alphabet.is_bytes else "word"
    return (
        f"{index:02d}-{kind}-{script}-{size}",
        [w.encode() for w in words],
        alphabet,
        rng.uniform(0, 3),
        rng.uniform(-2, 4),
        rng.randint(0, 40),
    )


def handmade_cases():
    abc = Alphabet([" ", "a", "b", "c", "d"])
    return [
        ("empty-word", [], abc, 1.0, 2.0, 0),
        ("empty-bytes", [], UTF8Alphabet(), 1.0, 2.0, 7),
        ("one-word-is-a-string", [b"abc"], UTF8Alphabet(), 1.0, 2.0, 3),
        ("only-special-tokens", [b"<s>", b"</s>", b"<unk>"], abc, 1.0, 2.0, 0),
        ("no-space-in-the-alphabet", [b"ab", b"b", b"cab", b"a"], Alphabet(["a", "b", "c"]), 0.5, 0.5, 5),
        ("invalid-utf8-and-nul-bytes", [b"\xff\xfe", b"a\x00b", b"abc", "日本".encode()], UTF8Alphabet(), 1, 1, 9),
        ("invalid-utf8-word-mode", [b"a\xe9", b"ab\x80", b"dd"], abc, 1.0, 1.0, 2),
        ("long-words", [b"a" * 200, b"a" * 199 + b"b", b"c" * 150], abc, 1.0, 1.0, 11),
    ]


ORACLE_CASES = handmade_cases() + [random_case(i) for i in range(32)]


@pytest.fixture(scope="module")
def oracle_blocks(tmp_path_factory) -> dict[str, bytes]:
    """Each case's block as DeepSpeech 0.7.4's save_dictionary appends it, all built in one decoder process."""
    directory = tmp_path_factory.mktemp("oracle")
    jobs = []
    for name, words, alphabet, alpha, beta, prefix_len in ORACLE_CASES:
        alphabet_file = None
        if not alphabet.is_bytes:
            alphabet_file = str(directory / f"{name}.alphabet.txt")
            with open(alphabet_file, "w", encoding="utf-8") as f:
                f.write(alphabet.serialize_text())
        jobs.append({"words_hex": [w.hex() for w in words], "alphabet": alphabet_file, "utf8": alphabet.is_bytes,
                     "alpha": alpha, "beta": beta, "prefix_len": prefix_len, "out": str(directory / name)})  # fmt: skip
    save_dictionaries(jobs)
    return {name: (directory / name).read_bytes()[prefix_len:] for name, *_, prefix_len in ORACLE_CASES}


@pytest.mark.parametrize("case", ORACLE_CASES, ids=lambda case: case[0])
def test_the_block_is_deepspeech_0_7_4s_byte_for_byte(case, oracle_blocks):
    name, words, alphabet, alpha, beta, prefix_len = case
    assert package_tail(words, alphabet, alpha, beta, prefix_len) == oracle_blocks[name]


def test_the_oracle_cases_cover_the_properties_that_vary(oracle_blocks):
    properties = {struct.unpack_from("<Q", block, 25 + 4 + 9 + 12 + 8)[0] for block in oracle_blocks.values()}
    for bit in (cf.TOP_SORTED, cf.NOT_TOP_SORTED, cf.STRING, cf.NOT_STRING):
        assert any(p & bit for p in properties)


# Coqui STT 1.4's own decoder loads each package and writes back the vocabulary block it read (at offset 0)
LOAD_AND_RESAVE = r"""
import json, sys
import coqui_stt_ctcdecoder as ctc
for job in json.loads(sys.argv[1]):
    alphabet = ctc.UTF8Alphabet() if job["alphabet"] is None else ctc.Alphabet()
    if job["alphabet"] is not None:
        assert alphabet.init(job["alphabet"].encode()) == 0
    scorer = ctc.Scorer()
    error = scorer.init_from_filepath(job["package"].encode(), alphabet)
    print(error)
    if error == 0:
        assert scorer.save_dictionary(job["resave"].encode(), False)
"""


def test_coquis_own_decoder_loads_the_packages_and_reads_their_vocabulary(tmp_path):
    python = client_python()  # skips where no Python 3.10 is
    if subprocess.run([python, "-c", "import coqui_stt_ctcdecoder"], capture_output=True).returncode != 0:
        pytest.skip("coqui_stt_ctcdecoder 1.4.0 is not in the native client's environment")
    lm = read(lm_part(WORD_SCORER, tmp_path))
    cases = [
        ("word", [b"she", b"had", b"your", b"dark", b"suit"], ENGLISH),
        ("word-empty", [], ENGLISH),
        ("bytes", ["привет".encode(), "日本語".encode(), b"a", b"ab"], UTF8Alphabet()),
    ]
    jobs = []
    for name, words, alphabet in cases:
        (tmp_path / name).write_bytes(lm + package_tail(words, alphabet, 0.75, 1.85, len(lm)))
        jobs.append({"package": str(tmp_path / name), "alphabet": None if alphabet.is_bytes else ALPHABET,
                     "resave": str(tmp_path / f"{name}.resaved")})  # fmt: skip
    done = subprocess.run([python, "-c", LOAD_AND_RESAVE, json.dumps(jobs)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == ["0"] * len(cases), done.stdout + done.stderr
    for name, words, alphabet in cases:
        assert (tmp_path / f"{name}.resaved").read_bytes() == package_tail(words, alphabet, 0.75, 1.85, 0)


def test_spelling_leaves_out_what_the_alphabet_cannot_spell():
    spelled = spell_vocabulary([b"ab", b"aB", b"a\xe9", b"<s>", "ба".encode(), b"ab"], Alphabet([" ", "a", "b"]))
    assert spelled.spellings == {(2, 3, 1)}
    assert spelled.examples == ("aB", "a\\xe9", "ба")
    spelled = spell_vocabulary([b"a\0", "ё".encode()], UTF8Alphabet())
    assert (spelled.spellings, spelled.left_out) == ({"ё".encode()}, (b"a\0",))


def test_the_vocabulary_is_read_as_coqui_reads_it(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"a b\tc\nd\r\ne\x0bf\x0cg  a\n")
    assert read_vocabulary(str(path)) == {b"a", b"b", b"c", b"d", b"e", b"f", b"g"}
    assert looks_char_based({b"a", "ё".encode(), "😀".encode()}) and not looks_char_based({b"a", b"ab"})


# ---------------------------------------------------------------------------------------------- the commands


def error_line(status: int, output: str) -> str:
    """The one line a refusal prints (status 1, no traceback)."""
    errors = [line for line in output.splitlines() if line.startswith("E ")]
    assert status == 1 and len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


@pytest.mark.skipif(not os.path.isdir(SHARED_SMOKE), reason="../shared/data/smoke_test (the vocabularies) is missing")
@pytest.mark.parametrize("alphabet_flag", ["--checkpoint", "--alphabet", None])
def test_coquis_smoke_scorers_are_rebuilt_byte_for_byte(alphabet_flag, tmp_path, cli):
    word_mode = alphabet_flag is not None
    scorer, vocabulary = (WORD_SCORER, "vocab.pruned.txt") if word_mode else (BYTES_SCORER, "vocab.pruned.bytes.txt")
    _, alpha, beta = defaults(scorer)
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    shutil.copy(ALPHABET, checkpoint / "alphabet.txt")
    flags = {"--checkpoint": [alphabet_flag, str(checkpoint)], "--alphabet": [alphabet_flag, ALPHABET], None: []}
    package = tmp_path / "rebuilt.scorer"
    argv = [*flags[alphabet_flag], "--lm", lm_part(scorer, tmp_path), "--vocab", os.path.join(SHARED_SMOKE, vocabulary),
            "--package", str(package), "--default_alpha", repr(alpha), "--default_beta", repr(beta)]  # fmt: skip
    status, output = cli(generate_scorer_package.main, argv)
    assert status == 0, output
    assert package.read_bytes() == read(scorer)
    assert f"using value infered from vocabulary contents: {str(not word_mode).lower()}" in output
    assert f"Package created in {package}." in output


@pytest.fixture
def package_inputs(tmp_path):
    """A checkpoint directory with Coqui's English alphabet, the smoke scorer's KenLM binary, a vocabulary of
    words it knows, and an empty folder for the package."""
    (tmp_path / "ckpt").mkdir()
    shutil.copy(ALPHABET, tmp_path / "ckpt" / "alphabet.txt")
    (tmp_path / "vocab.txt").write_text("she had your dark suit in greasy wash water all year\n")
    (tmp_path / "out").mkdir()
    return tmp_path, lm_part(WORD_SCORER, tmp_path)


def package_argv(root, lm: str, changes: dict[str, str | None] | None = None) -> list[str]:
    flags = {
        "--checkpoint": str(root / "ckpt"),
        "--lm": lm,
        "--vocab": str(root / "vocab.txt"),
        "--package": str(root / "out" / "new.scorer"),
        "--default_alpha": "0.75",
        "--default_beta": "1.85",
    }
    flags.update({f"--{name}": value for name, value in (changes or {}).items()})
    return [part for name, value in flags.items() if value is not None for part in (name, value)]


def refusals(root, lm: str) -> list[tuple[str, dict[str, str | None], str, str]]:
    """(what, changed flags, what the error says, the file it names)."""
    (root / "lm.arpa").write_text("\n\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\t<s>\n-1.0\tyes\n\n\\end\\\n")
    (root / "random.bin").write_bytes(bytes(range(256)) * 8)
    (root / "trailing.lm").write_bytes(read(lm) + b"more")
    (root / "empty.txt").write_text(" \n\t\n")
    (root / "capitals.txt").write_text("SHE HAD YOUR\n")
    (root / "other.txt").write_text("zzqx qqzv wwkj xxpq year\n")
    (root / "chars.txt").write_text("she had your\n")
    (root / "bare").mkdir()
    missing = str(root / "missing")
    return [
        ("both alphabets", {"alphabet": ALPHABET}, "--checkpoint and --alphabet", "--alphabet"),
        ("no language model", {"lm": missing}, "language model not found", missing),
        ("an ARPA file", {"lm": str(root / "lm.arpa")}, "an ARPA file; convert it with build_binary -v", "lm.arpa"),
        ("not KenLM", {"lm": str(root / "random.bin")}, "not a KenLM binary", "random.bin"),
        ("a package as --lm", {"lm": WORD_SCORER}, "already a scorer package", WORD_SCORER),
        ("bytes after KenLM's", {"lm": str(root / "trailing.lm")}, "4 bytes follow KenLM's data", "trailing.lm"),
        ("no vocabulary", {"vocab": missing}, "vocabulary file not found", missing),
        ("an empty vocabulary", {"vocab": str(root / "empty.txt")}, "holds no words", "empty.txt"),
        ("nothing to spell", {"vocab": str(root / "capitals.txt")}, "can spell none of its words", "capitals.txt"),
        ("another model's vocabulary", {"vocab": str(root / "other.txt")}, "4 of its 5 words are not in", "other.txt"),
        ("no alphabet", {"checkpoint": None}, "No --checkpoint (or --alphabet) given", "--checkpoint"),
        ("no alphabet.txt", {"checkpoint": str(root / "bare")}, "no alphabet.txt in the --checkpoint", "bare"),
        ("no package folder", {"package": str(root / "random.bin" / "x.scorer")}, "cannot write there", "random.bin"),
    ]


def test_generate_scorer_package_refuses_bad_inputs_in_one_line_writing_nothing(package_inputs, cli):
    root, lm = package_inputs
    for what, changes, message, named in refusals(root, lm):
        status, output = cli(generate_scorer_package.main, package_argv(root, lm, changes))
        line = error_line(status, output)
        assert message in line and named in line, (what, line)
        assert os.listdir(root / "out") == [], what


def test_an_existing_package_is_never_replaced(package_inputs, cli):
    root, lm = package_inputs
    (root / "out" / "new.scorer").write_bytes(b"the user's")
    line = error_line(*cli(generate_scorer_package.main, package_argv(root, lm)))
    assert "new.scorer: already exists (--package): remove it, or choose another path" in line
    assert (root / "out" / "new.scorer").read_bytes() == b"the user's"


def test_a_few_words_unknown_to_the_model_are_warned_about(package_inputs, cli):
    root, lm = package_inputs
    (root / "vocab.txt").write_text("she had your dark suit in greasy wash water all year qqzx Year\n")
    status, output = cli(generate_scorer_package.main, package_argv(root, lm))
    assert status == 0, output
    assert "1 words are not in the language model" in output and "'qqzx'" in output
    assert "1 of 13 words have characters outside the alphabet and are left out" in output  # "Year"
    assert (root / "out" / "new.scorer").read_bytes()[: os.path.getsize(lm)] == read(lm)


def test_a_binary_that_stores_its_vocabulary_is_refused(package_inputs, cli, tmp_path):
    tools = bins()
    root, _ = package_inputs
    arpa, with_strings = str(tmp_path / "lm.arpa"), str(tmp_path / "with_strings.binary")
    kenlm(tools, "lmplz", "--order", "3", "--memory", "32M", "--text", corpus(tmp_path / "corpus.txt"), "--arpa",
          arpa, "--temp_prefix", str(tmp_path))  # fmt: skip
    kenlm(tools, "build_binary", "-S", "16M", "trie", arpa, with_strings)  # no -v
    line = error_line(*cli(generate_scorer_package.main, package_argv(root, with_strings)))
    assert "with_strings.binary: this KenLM binary stores its vocabulary strings" in line
    assert "rebuild it with build_binary -v" in line and os.listdir(root / "out") == []


def fake_kenlm(directory, lmplz: str) -> str:
    """KenLM's three programs as shell scripts; lmplz runs `lmplz`."""
    directory.mkdir()
    for tool, body in [("lmplz", lmplz), ("filter", "exit 0"), ("build_binary", "exit 0")]:
        (directory / tool).write_text(f"#!/bin/sh\n{body}\n")
        (directory / tool).chmod(0o755)
    return str(directory)


def test_generate_lm_refuses_bad_inputs_in_one_line_writing_nothing(tmp_path, cli):
    failing = fake_kenlm(tmp_path / "bins", "echo '****' >&2; echo 'ERROR: the disk is on fire' >&2; exit 3")
    text = corpus(tmp_path / "corpus.txt", sentences=50)
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "no_tools").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    common = ["--input_txt", text, "--output_dir", str(out), "--kenlm_bins", failing, *LM_FLAGS]
    cases = [
        (["--input_txt", str(tmp_path / "missing.txt")], "missing.txt: corpus not found (--input_txt)"),
        (["--input_txt", str(tmp_path / "empty.txt")], "empty.txt: the corpus holds no words"),
        (["--output_dir", f"{text}/lm"], "corpus.txt/lm: cannot write there"),
        (["--kenlm_bins", str(tmp_path / "no_tools")], "no_tools/lmplz: lmplz not found"),
        ([], "lmplz failed (exit status 3): ERROR: the disk is on fire"),
        (["--top_k", "0"], "--top_k 0: keep at least one word"),
    ]
    for changes, message in cases:
        line = error_line(*cli(generate_lm.main, common + changes))  # argparse: the last of a flag counts
        assert message in line, line
        assert os.listdir(out) == [], (changes, os.listdir(out))


def test_a_stopped_generate_lm_stops_kenlm_and_leaves_nothing(tmp_path):
    pid_file = tmp_path / "lmplz.pid"
    tools = fake_kenlm(tmp_path / "bins", f"echo $$ > {pid_file}; echo started >&2; exec sleep 60")
    out = tmp_path / "out"
    out.mkdir()
    argv = ["--input_txt", corpus(tmp_path / "corpus.txt", sentences=50), "--output_dir", str(out),
            "--kenlm_bins", tools, *LM_FLAGS]  # fmt: skip
    child = subprocess.Popen([sys.executable, "-m", "coqui_stt_training.generate_lm", *argv], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    wait_for(child, "started")
    child.send_signal(signal.SIGTERM)
    output = child.communicate(timeout=60)[0]
    assert child.returncode == 128 + signal.SIGTERM, output
    assert "Stopped on SIGTERM while building the language model" in output, output
    assert os.listdir(out) == []
    assert not os.path.exists(f"/proc/{pid_file.read_text().strip()}")  # lmplz was stopped too


def test_generate_lm_says_what_kenlm_said(tmp_path, cli):
    bins()
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("hello world\nhello there\n")
    text = corpus(tmp_path / "corpus.txt", sentences=200)
    out = tmp_path / "out"
    too_small = ["--input_txt", str(tiny), "--output_dir", str(out), *LM_FLAGS]
    line = error_line(*cli(generate_lm.main, too_small))
    assert "lmplz failed (killed by signal 6): Could not calculate Kneser-Ney discounts" in line
    assert "add --discount_fallback" in line and os.listdir(out) == []
    probing = ["--input_txt", text, "--output_dir", str(out), *LM_FLAGS[:-1], "probing"]
    line = error_line(*cli(generate_lm.main, probing))
    assert "build_binary failed (exit status 1): Quantization is only implemented in the trie data structure" in line
    assert os.listdir(out) == []


def accepts(fst: cf.ConstFst, labels) -> bool:
    """Whether the vocabulary FST spells `labels` from its start to a final state."""
    first, state = fst.first_arc, fst.start
    for label in labels:
        arcs = slice(first[state], first[state] + fst.arc_count[state])
        found = np.flatnonzero(fst.ilabel[arcs] == label)
        if not found.size:
            return False
        state = int(fst.next_state[arcs][found[0]])
    return bool(fst.is_final[state])


@pytest.mark.parametrize("mode", ["word", "bytes"])
def test_a_corpus_becomes_a_package_the_scorer_reads(mode, tmp_path, cli):
    bins()
    text = corpus(tmp_path / "corpus.txt")
    if mode == "bytes":  # Coqui's character model: each word spelled one letter a token
        lines = (tmp_path / "corpus.txt").read_text().splitlines()
        (tmp_path / "corpus.txt").write_text("".join(" ".join(w) + "\n" for line in lines for w in line.split()))
    out = tmp_path / "lm"
    fallback = ["--discount_fallback"] if mode == "bytes" else []  # 27 letters: none seen once or twice
    status, output = cli(generate_lm.main, ["--input_txt", text, "--output_dir", str(out), *LM_FLAGS, *fallback])
    assert status == 0, output
    assert sorted(os.listdir(out)) == ["lm.binary", "vocab-1000.txt"]  # the intermediates are gone
    words = (tmp_path / "corpus.txt").read_text().lower().split()
    vocabulary = (out / "vocab-1000.txt").read_text()
    counts = [words.count(w) for w in vocabulary.split("\n")]
    assert counts == sorted(counts, reverse=True) and not vocabulary.endswith("\n")
    assert f"  Your text file has {len(words)} words in total" in output

    (tmp_path / "ckpt").mkdir()
    shutil.copy(ALPHABET, tmp_path / "ckpt" / "alphabet.txt")
    package = tmp_path / "lm.scorer"
    status, output = cli(generate_scorer_package.main, ["--checkpoint", str(tmp_path / "ckpt"), "--lm",
                         str(out / "lm.binary"), "--vocab", str(out / "vocab-1000.txt"), "--package", str(package),
                         "--default_alpha", "0.931289", "--default_beta", "1.1834137"])  # fmt: skip
    assert status == 0, output
    alphabet = UTF8Alphabet() if mode == "bytes" else ENGLISH
    scorer = Scorer(str(package), alphabet)
    assert (scorer.utf8_mode, scorer.order) == (mode == "bytes", 3)
    assert (scorer.alpha, scorer.beta) == (float(np.float32(0.931289)), float(np.float32(1.1834137)))
    data = package.read_bytes()
    fst, end = cf.read_const_fst(data, os.path.getsize(out / "lm.binary") + 25)
    assert end == len(data)
    for word in vocabulary.split("\n"):
        spelled = list(word.encode()) if mode == "bytes" else [i + 1 for i in ENGLISH.encode(word)] + [1]
        assert accepts(fst, spelled), word
    assert not accepts(fst, list(b"qqqqq"))


def test_word_statistics_are_coquis():
    counter = {"a": 5, "b": 3, "c": 3, "d": 1}
    top = [("a", 5), ("b", 3), ("c", 3)]
    assert word_statistics(collections.Counter(counter), top, 3) == [
        "  Your text file has 12 words in total",
        "  It has 4 unique words",
        "  Your top-3 words are 91.6667 percent of all words",
        '  Your most common word "a" occurred 5 times',
        '  The least common word in your top-k is "c" with 3 times',
        '  The first word with 5 occurrences is "a" at place 0',
    ]
