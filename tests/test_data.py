import os
import shutil

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coqui_stt_training.data.audio import load_audio
from coqui_stt_training.data.samples import DataError, check_samples, ctc_min_frames, load_data_set, read_csv
from coqui_stt_training.feeding.batches import LoaderSettings, data_loader, make_batches
from coqui_stt_training.model.alphabet import load_alphabet
from coqui_stt_training.model.features import FeatureSettings
from tests.helpers import ALPHABET as ALPHABET_PATH
from tests.helpers import LDC, LDC_SENTENCE, LDC_WAV, RUSSIAN, SMOKE

ALPHABET = load_alphabet(ALPHABET_PATH)
FEATURES = FeatureSettings()  # 16 kHz, 32 ms windows every 20 ms


def write_csv(folder, rows, header="wav_filename,wav_filesize,transcript"):
    path = folder / "set.csv"
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def folder(tmp_path):
    shutil.copy(LDC_WAV, tmp_path / "a.wav")
    return tmp_path


def test_paths_resolve_against_the_csv_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the CSV is found by its own folder, not the working directory
    samples = read_csv(os.path.relpath(LDC, tmp_path))
    assert len(samples) == 1
    assert os.path.isfile(samples[0].audio_path)
    assert samples[0].filesize == 93638
    assert samples[0].transcript == LDC_SENTENCE


def test_wav_filesize_optional_and_orders_rows(folder):
    shutil.copy(folder / "a.wav", folder / "b.wav")
    path = write_csv(folder, ["a.wav,300,a", "b.wav,100,b"])
    assert [s.wav_filename for s in load_data_set([path], ALPHABET, FEATURES, "train")] == ["b.wav", "a.wav"]
    no_size = write_csv(folder, ["a.wav,a", "b.wav,b"], header="wav_filename,transcript")
    assert [s.wav_filename for s in load_data_set([no_size], ALPHABET, FEATURES, "train")] == ["a.wav", "b.wav"]


# Every bad input with its exact message ({csv}: the CSV's path, {dir}: its folder). Row problems are
# listed under their kind; file problems stop at once.
BAD_INPUTS = [
    (["missing.wav,1,hello"], None, "audio file not found", "{csv}, row 2: audio file not found: {dir}/missing.wav"),
    (
        ["a.wav,1,"],
        None,
        "empty transcript",
        "{csv}, row 2: Found an empty transcript for a.wav! You must include a transcript for all data.",
    ),
    (
        ["a.wav,1,hé!"],
        None,
        "characters not in the alphabet",
        "{csv}, row 2: Alphabet cannot encode transcript \"hé!\" of a.wav; missing characters are: ['!', 'é']. "
        "Check that your alphabet contains all characters in the corpus.",
    ),
    (
        ["a.wav,1," + "ab" * 150],
        None,
        "transcript too long for its audio",
        "{csv}, row 2: transcript too long for its audio: {dir}/a.wav gives 145 feature frames but its 300 labels "
        "need at least 300 for CTC",
    ),
    (
        ["a.wav,1," + "a" * 100],
        None,
        "transcript too long for its audio",
        "{csv}, row 2: transcript too long for its audio: {dir}/a.wav gives 145 feature frames but its 100 labels "
        "need at least 199 for CTC",
    ),
    (
        ["notes.mp3,1,hello"],
        None,
        "unreadable audio",
        "{csv}, row 2: unreadable audio {dir}/notes.mp3 (Error opening '{dir}/notes.mp3': Format not recognised.)",
    ),
    ([",1,hello"], None, "empty wav_filename", "{csv}, row 2: empty wav_filename"),
    (["a.wav,big,hello"], None, "bad wav_filesize", "{csv}, row 2: wav_filesize is not an integer: 'big'"),
    (
        ["garbage.wav,1,hello"],
        None,
        "unreadable audio",
        "{csv}, row 2: unreadable audio {dir}/garbage.wav (Error opening '{dir}/garbage.wav': Format not recognised.)",
    ),
    (["silent.wav,1,hello"], None, "empty audio", "{csv}, row 2: empty audio {dir}/silent.wav"),
    (
        ["8k.wav,1,hello"],
        None,
        "wrong sample rate",
        "{csv}, row 2: {dir}/8k.wav has sample rate 8000 but --audio_sample_rate is 16000 and --normalize_sample_rate "
        "is false",
    ),
    (
        ["a.wav,hello"],
        "wav_filename,text",
        None,
        "{csv}: missing CSV column 'transcript' (header is: wav_filename,text)",
    ),
    ([], "", None, "{csv}: missing CSV column 'wav_filename' (header is: empty)"),
    (
        ['a.wav,1,"' + "x" * 200000 + '"'],
        None,
        None,
        "{csv}, row 2: malformed CSV (field larger than field limit (131072))",
    ),
]


@pytest.mark.parametrize("rows, header, kind, message", BAD_INPUTS)
def test_each_bad_input_has_its_exact_message(folder, rows, header, kind, message):
    (folder / "garbage.wav").write_bytes(b"RIFF not really a wave file at all")
    (folder / "notes.mp3").write_text("a text file with an audio name\n")
    soundfile.write(folder / "silent.wav", np.zeros(0, np.int16), 16000, subtype="PCM_16")
    soundfile.write(folder / "8k.wav", np.zeros(8000, np.int16), 8000, subtype="PCM_16")
    path = write_csv(folder, rows, "wav_filename,wav_filesize,transcript" if header is None else header)
    with pytest.raises(DataError) as error:
        load_data_set([path], ALPHABET, FEATURES, "train", normalize_sample_rate=False)
    expected = message.format(csv=path, dir=folder)
    lines = str(error.value).splitlines()
    if kind is None:
        assert lines == [expected]
    else:
        assert lines == [
            "1 invalid sample(s) in --train_files (--skip_invalid_samples true leaves them out):",
            f"  {kind}: 1 row(s)",
            f"    {expected}",
        ]


def test_every_bad_row_is_reported_at_once_grouped_by_kind(folder):
    (folder / "empty.wav").write_bytes(b"")
    (folder / "garbage.wav").write_bytes(b"RIFF not really a wave file at all")
    (folder / "notes.mp3").write_text("a text file with an audio name\n")
    rows = ["a.wav,1,fine", "gone.wav,1,x", "empty.wav,1,x", "garbage.wav,1,x", "a.wav,1,X"]
    rows += [f"gone{i}.wav,1,x" for i in range(12)]
    path = write_csv(folder, rows)
    with pytest.raises(DataError) as error:
        load_data_set([path], ALPHABET, FEATURES, "dev")
    lines = str(error.value).splitlines()
    assert lines[0] == "16 invalid sample(s) in --dev_files (--skip_invalid_samples true leaves them out):"
    headings = [line for line in lines if line.startswith("  ") and not line.startswith("    ")]
    assert headings == [
        "  audio file not found: 13 row(s)",
        "  empty audio: 1 row(s)",  # 0 bytes
        "  unreadable audio: 1 row(s)",
        "  characters not in the alphabet: 1 row(s)",
    ]
    assert lines[1 + 1 + 10] == "    ... and 3 more"  # at most 10 rows listed per kind
    assert [line.split(":")[0].strip() for line in (lines[14], lines[16])] == [f"{path}, row {n}" for n in (4, 5)]


def test_skip_invalid_samples_leaves_them_out_with_a_count(folder, capsys):
    path = write_csv(folder, ["a.wav,1,fine", "gone.wav,1,x", "a.wav,1,X"])
    samples = load_data_set([path], ALPHABET, FEATURES, "train", skip_invalid=True)
    assert [s.transcript for s in samples] == ["fine"]
    err = capsys.readouterr().err
    assert "W Skipping 2 invalid sample(s) of --train_files, 1 left:" in err
    assert "row 3: audio file not found" in err
    only_bad = write_csv(folder, ["gone.wav,1,x"])
    with pytest.raises(DataError, match=r"^--train_files: all 1 samples are invalid:\n  audio file not found"):
        load_data_set([only_bad], ALPHABET, FEATURES, "train", skip_invalid=True)


def test_non_utf8_csv_names_the_row(folder):
    path = folder / "set.csv"
    path.write_bytes(b"wav_filename,wav_filesize,transcript\na.wav,1,ok\na.wav,1,caf\xe9\n")
    with pytest.raises(DataError) as error:
        read_csv(str(path))
    assert str(error.value) == f"{path}, row 3: not valid UTF-8 (byte 0xe9 at offset 59)"


def test_missing_csv():
    with pytest.raises(DataError, match=r"nothere\.csv: cannot read CSV file"):
        read_csv("nothere.csv")


def test_ctc_min_frames_counts_repeats():
    assert ctc_min_frames([1, 2, 3]) == 3
    assert ctc_min_frames([1, 1, 2, 2, 2]) == 8


def test_batches_drop_incomplete_last_in_training_only():
    assert make_batches(5, 2, drop_last=True) == [[0, 1], [2, 3]]
    assert make_batches(5, 2, drop_last=False) == [[0, 1], [2, 3], [4]]


def test_batch_holds_padded_features_and_labels(folder):
    shutil.copy(os.path.join(RUSSIAN, "ru.wav"), folder / "long.wav")
    path = write_csv(folder, ["a.wav,1,ab", "long.wav,2,abc"])
    samples = load_data_set([path], ALPHABET, FEATURES, "dev")
    batch = next(iter(data_loader(samples, 2, LoaderSettings(), train=False)))
    assert batch.features.shape == (2, 282, 26)
    assert batch.feature_lengths.tolist() == [145, 282]
    assert float(batch.features[0, 145:].abs().sum()) == 0
    assert batch.labels.tolist() == [1, 2, 1, 2, 3]
    assert batch.label_lengths.tolist() == [2, 3]


def test_other_rates_and_formats_are_resampled(folder):
    for name in ("LDC93S1_pcms16le_2_44100.wav", "LDC93S1.ogg", "LDC93S1.flac", "LDC93S1.opus"):
        shutil.copy(os.path.join(SMOKE, name), folder / name)
    path = write_csv(
        folder, [f"{n},1,abc" for n in ("LDC93S1_pcms16le_2_44100.wav", "LDC93S1.ogg", "LDC93S1.flac", "LDC93S1.opus")]
    )
    samples = load_data_set([path], ALPHABET, FEATURES, "test")
    batch = next(iter(data_loader(samples, 4, LoaderSettings(), train=False)))
    assert batch.feature_lengths.tolist() == [145, 145, 145, 145]


# ---- fuzzing: random bytes give our errors, never a crash or a hang --------------------------------

FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
HEADER = b"wav_filename,wav_filesize,transcript\n"


def check_random_csv(folder, content: bytes) -> None:
    path = folder / "fuzz.csv"
    path.write_bytes(content)
    try:
        samples = read_csv(str(path))
    except DataError as e:
        assert str(e).startswith(str(path))
        return
    for _, kind, message in check_samples(samples, ALPHABET, FEATURES):
        assert kind
        assert message.startswith(f"{path}, row ")


@FUZZ
@given(content=st.binary(max_size=400))
def test_fuzz_csv_reader_random_bytes(folder, content):
    check_random_csv(folder, content)


@FUZZ
@given(
    rows=st.lists(
        st.lists(
            st.sampled_from(
                [
                    "a.wav",
                    "a",
                    ",",
                    '"',
                    "\n",
                    "\r",
                    "\x00",
                    "/",
                    "é",
                    " ",
                    "\\",
                    "\ufeff",
                    "0",
                    "-1",
                    "99999999999999999999",
                    "../a.wav",
                    "a.mp3",
                ]
            ),
            max_size=12,
        ),
        max_size=8,
    )
)
def test_fuzz_csv_reader_csv_like_text(folder, rows):
    check_random_csv(folder, HEADER + "\n".join("".join(row) for row in rows).encode("utf-8"))


def test_mp3_and_other_formats_are_read_whatever_their_names(folder):
    """No format is refused by its name: an MP3 (what Common Voice ships) and a WAV named .dat read alike."""
    speech = load_audio(LDC_WAV, 16000)
    soundfile.write(folder / "clip.mp3", speech, 16000, format="MP3")
    shutil.copy(LDC_WAV, folder / "clip.dat")
    path = write_csv(folder, ["clip.mp3,1,she had your dark suit", "clip.dat,2,she had your dark suit"])
    samples = load_data_set([path], ALPHABET, FEATURES, "train")
    assert [s.wav_filename for s in samples] == ["clip.mp3", "clip.dat"]
    assert abs(samples[0].duration - len(speech) / 16000) < 0.01
    decoded = load_audio(str(folder / "clip.mp3"), 16000)
    assert len(decoded) == len(speech)
    assert float(np.corrcoef(decoded, speech)[0, 1]) > 0.95  # lossy, but the same speech
