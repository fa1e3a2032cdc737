import shutil

import pytest

from coqui_stt_training.alphabet import load_alphabet
from coqui_stt_training.config import Config
from coqui_stt_training.data import DataError, ctc_min_frames, data_loader, load_data_set, make_batches, read_csv

SMOKE = "data/smoke_test"
ALPHABET = load_alphabet("data/alphabet.txt")


def write_csv(folder, rows, header="wav_filename,wav_filesize,transcript"):
    path = folder / "set.csv"
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def folder(tmp_path):
    shutil.copy(f"{SMOKE}/LDC93S1.wav", tmp_path / "a.wav")
    return tmp_path


def config(**kwargs):
    return Config(**kwargs)


def test_paths_resolve_against_the_csv_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the CSV is found by its own folder, not the working directory
    import os
    samples = read_csv(os.path.join(os.path.dirname(__file__), "..", SMOKE, "ldc93s1.csv"))
    assert len(samples) == 1 and os.path.isfile(samples[0].audio_path) and samples[0].filesize == 93638
    assert samples[0].transcript == "she had your dark suit in greasy wash water all year"


def test_wav_filesize_optional_and_orders_rows(folder):
    shutil.copy(folder / "a.wav", folder / "b.wav")
    path = write_csv(folder, ["a.wav,300,a", "b.wav,100,b"])
    assert [s.wav_filename for s in load_data_set([path], ALPHABET, config(), "train")] == ["b.wav", "a.wav"]
    no_size = write_csv(folder, ["a.wav,a", "b.wav,b"], header="wav_filename,transcript")
    assert [s.wav_filename for s in load_data_set([no_size], ALPHABET, config(), "train")] == ["a.wav", "b.wav"]


@pytest.mark.parametrize("rows, header, message", [
    (["missing.wav,1,hello"], None, r"set.csv, row 2: audio file not found: .*missing.wav"),
    (["a.wav,1,"], None, r"set.csv, row 2: Found an empty transcript"),
    (["a.wav,1,Hello, world"], None, r"set.csv, row 2: .*Alphabet cannot encode transcript"),
    (["a.wav,1,hé!"], None, r"missing characters are: \['!', 'é'\]"),
    (["a.wav,1," + "ab" * 150], None, r"set.csv, row 2: transcript too long for its audio: .*a.wav gives 145 "
                                     r"feature frames but its 300 labels need at least 300"),
        (["a.wav,1," + "a" * 100], None, r"100 labels need at least 199 for CTC"),
    (["a.mp3,1,hello"], None, r'Unknown audio type extension ".mp3"'),
    (["a.wav,big,hello"], None, r"set.csv, row 2: wav_filesize is not an integer: 'big'"),
    (["a.wav,hello"], "wav_filename,text", r"set.csv: missing CSV column 'transcript' \(header is: wav_filename,text\)"),
])
def test_bad_rows_are_named(folder, rows, header, message):
    path = write_csv(folder, rows, header or "wav_filename,wav_filesize,transcript")
    with pytest.raises(DataError, match=message):
        load_data_set([path], ALPHABET, config(), "train")


def test_every_bad_row_is_reported_at_once(folder):
    (folder / "empty.wav").write_bytes(b"")
    (folder / "garbage.wav").write_bytes(b"RIFF not really a wave file at all")
    path = write_csv(folder, ["a.wav,1,fine", "gone.wav,1,x", "empty.wav,1,x", "garbage.wav,1,x", "a.wav,1,X"])
    with pytest.raises(DataError) as error:
        load_data_set([path], ALPHABET, config(), "dev")
    lines = str(error.value).splitlines()
    assert lines[0] == "4 invalid sample(s) in --dev_files:"
    assert [line.split(":")[0] for line in lines[1:]] == [f"{path}, row {n}" for n in (3, 4, 5, 6)]
    assert "unreadable audio" in lines[2] and "unreadable audio" in lines[3]


def test_non_utf8_csv_names_the_row(folder):
    path = folder / "set.csv"
    path.write_bytes(b"wav_filename,wav_filesize,transcript\na.wav,1,ok\na.wav,1,caf\xe9\n")
    with pytest.raises(DataError, match=r"set.csv, row 3: not valid UTF-8"):
        read_csv(str(path))


def test_missing_csv():
    with pytest.raises(DataError, match="nothere.csv: cannot read CSV file"):
        read_csv("nothere.csv")


def test_ctc_min_frames_counts_repeats():
    assert ctc_min_frames([1, 2, 3]) == 3 and ctc_min_frames([1, 1, 2, 2, 2]) == 8


def test_batches_drop_incomplete_last_in_training_only():
    assert make_batches(5, 2, drop_last=True) == [[0, 1], [2, 3]]
    assert make_batches(5, 2, drop_last=False) == [[0, 1], [2, 3], [4]]


def test_batch_holds_padded_features_and_labels(folder):
    shutil.copy(f"{SMOKE}/russian_sample_data/ru.wav", folder / "long.wav")
    path = write_csv(folder, ["a.wav,1,ab", "long.wav,2,abc"])
    samples = load_data_set([path], ALPHABET, config(), "dev")
    batch = next(iter(data_loader(samples, 2, config(), train=False)))
    assert batch.features.shape == (2, 282, 26)
    assert batch.feature_lengths.tolist() == [145, 282]
    assert float(batch.features[0, 145:].abs().sum()) == 0
    assert batch.labels.tolist() == [1, 2, 1, 2, 3] and batch.label_lengths.tolist() == [2, 3]


def test_other_rates_and_formats_are_resampled(folder):
    for name in ("LDC93S1_pcms16le_2_44100.wav", "LDC93S1.ogg", "LDC93S1.flac", "LDC93S1.opus"):
        shutil.copy(f"{SMOKE}/{name}", folder / name)
    path = write_csv(folder, [f"{n},1,abc" for n in ("LDC93S1_pcms16le_2_44100.wav", "LDC93S1.ogg",
                                                      "LDC93S1.flac", "LDC93S1.opus")])
    samples = load_data_set([path], ALPHABET, config(), "test")
    batch = next(iter(data_loader(samples, 4, config(), train=False)))
    assert batch.feature_lengths.tolist() == [145, 145, 145, 145]
