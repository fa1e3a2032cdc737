"""`python -m coqui_stt_training.import_cv` on a folder shaped as a Common Voice release: TSVs with Common
Voice's columns, MP3 clips encoded here from the shipped speech, and the rows a real release has that
cannot be used (a clip missing, one empty, one not audio, a sentence in another script)."""

from __future__ import annotations

import csv
import os

import soundfile

from coqui_stt_training import import_cv, train

from .helpers import ALPHABET, LDC_WAV, ROOT, RUSSIAN, digest, run

PROMPTS = os.path.join(ROOT, "data", "asterisk_en")
COLUMNS = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
           "gender", "accents", "variant", "locale", "segment"]  # fmt: skip


def encode_mp3(source: str, target: str) -> None:
    samples, rate = soundfile.read(source, dtype="float32")
    soundfile.write(target, samples, rate, format="MP3", subtype="MPEG_LAYER_III")


def common_voice_folder(root) -> str:
    """cv/ with train, dev, test and validated TSVs and clips/; returns its path."""
    cv = os.path.join(str(root), "cv")
    clips = os.path.join(cv, "clips")
    os.makedirs(clips)
    with open(os.path.join(PROMPTS, "prompts.csv"), encoding="utf-8") as f:
        prompts = [(r["wav_filename"], r["transcript"]) for r in csv.DictReader(f)]
    rows = []  # (set, speaker, clip, sentence)
    for i, (wav, transcript) in enumerate(prompts):
        clip = f"common_voice_en_{i}.mp3"
        encode_mp3(os.path.join(PROMPTS, wav), os.path.join(clips, clip))
        sentence = transcript.capitalize() + "."  # as Common Voice has them: capitals and punctuation
        rows.append(("train" if i < 4 else "dev" if i == 4 else "test", f"speaker{i % 2}", clip, sentence))
    encode_mp3(LDC_WAV, os.path.join(clips, "common_voice_en_ldc.mp3"))
    rows.append(("dev", "speaker2", "common_voice_en_ldc.mp3", "She had your dark suit in greasy wash water all year."))
    encode_mp3(os.path.join(RUSSIAN, "ru.wav"), os.path.join(clips, "common_voice_ru_0.mp3"))
    rows.append(("train", "speaker3", "common_voice_ru_0.mp3", "Бедняга ребят, на его месте должен был быть я."))
    rows.append(("train", "speaker4", "common_voice_en_missing.mp3", "This clip was never downloaded."))
    open(os.path.join(clips, "common_voice_en_empty.mp3"), "wb").close()
    rows.append(("train", "speaker4", "common_voice_en_empty.mp3", "This clip is empty."))
    with open(os.path.join(clips, "common_voice_en_text.mp3"), "w") as f:
        f.write("<html>not found</html>\n")
    rows.append(("test", "speaker4", "common_voice_en_text.mp3", "This clip is a web page."))
    for name in ("train", "dev", "test", "validated"):
        with open(os.path.join(cv, f"{name}.tsv"), "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(COLUMNS)
            for i, (subset, speaker, clip, sentence) in enumerate(rows):
                if name in (subset, "validated"):
                    writer.writerow([speaker, clip, str(i), sentence, "", "2", "0", "", "", "", "", "en", ""])
    return cv


def rows_of(path: str) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_import_cv_makes_csvs_that_train_and_counts_every_skipped_row(tmp_path, capsys):
    cv = common_voice_folder(tmp_path)
    clips = os.path.join(cv, "clips")
    before = digest(clips)
    status, out = run(import_cv.main, [cv, "--filter_alphabet", ALPHABET, "--workers", "2"], capsys)
    assert status == 0, out
    train_rows = rows_of(os.path.join(clips, "train.csv"))
    assert [r["wav_filename"] for r in train_rows] == [f"common_voice_en_{i}.mp3" for i in range(4)]  # TSV order
    assert train_rows[0]["transcript"] == "all circuits are busy now"  # Coqui's cleaning: case, punctuation
    assert train_rows[0]["wav_filesize"] == str(os.path.getsize(os.path.join(clips, "common_voice_en_0.mp3")))
    dev_rows = rows_of(os.path.join(clips, "dev.csv"))
    assert [r["transcript"] for r in dev_rows][-1] == "she had your dark suit in greasy wash water all year"
    assert "train.tsv: imported 4 of 7 samples" in out
    for reason in ("characters not in --filter_alphabet", "audio file not found", "empty audio"):
        assert f"skipped 1: {reason}" in out, out
    assert "test.tsv: imported 1 of 2 samples" in out and "skipped 1: unreadable audio" in out
    skipped = rows_of(os.path.join(clips, "import_cv-skipped.csv"))
    assert sorted(r["reason"] for r in skipped if r["where"].startswith("train.tsv")) == [
        "audio file not found", "characters not in --filter_alphabet", "empty audio"
    ]  # fmt: skip
    assert not os.path.exists(os.path.join(clips, "alphabet.txt"))  # --filter_alphabet is the alphabet
    # train-all: validated without the dev and test sets' speakers (0 and 1: every prompt) and sentences
    assert rows_of(os.path.join(clips, "train-all.csv")) == []
    # the clips are used where they are: nothing converted, nothing changed
    assert {k: v for k, v in digest(clips).items() if k.endswith(".mp3")} == before

    csvs = {n: os.path.join(clips, f"{n}.csv") for n in ("train", "dev", "test")}
    argv = ["--alphabet_config_path", ALPHABET, "--train_files", csvs["train"], "--dev_files", csvs["dev"],
            "--test_files", csvs["test"], "--n_hidden", "16", "--epochs", "1", "--checkpoint_dir",
            str(tmp_path / "ckpt")]  # fmt: skip
    status, out = run(train.main, argv, capsys)
    assert status == 0, out
    assert f"Test on {csvs['test']} - WER:" in out

    # a second run on the same folder changes nothing
    outputs = digest(clips)
    status, out = run(import_cv.main, [cv, "--filter_alphabet", ALPHABET], capsys)
    assert status == 1
    assert out.strip().splitlines()[-1] == (
        f"E {os.path.join(clips, 'train.csv')} exists: import_cv never overwrites its outputs without --force"
    )
    assert digest(clips) == outputs


def test_import_cv_wav_conversion_normalize_and_generated_alphabet(tmp_path, capsys):
    cv = common_voice_folder(tmp_path)
    with open(os.path.join(cv, "test.tsv"), "a", encoding="utf-8") as f:
        f.write("speaker5\tcommon_voice_en_0.mp3\t99\tAll circuits are busy, café.\t\t2\t0\t\t\t\t\ten\t\n")
    out_dir = tmp_path / "csvs"
    status, out = run(import_cv.main, [cv, "--audio_format", "wav", "--normalize", "--output_dir", str(out_dir),
                                       "--workers", "1"], capsys)  # fmt: skip
    assert status == 0, out
    test_rows = rows_of(str(out_dir / "test.csv"))
    assert test_rows[-1]["transcript"] == "all circuits are busy cafe"  # NFKD folded to ASCII
    assert test_rows[-1]["wav_filename"] == os.path.join("..", "cv", "clips", "common_voice_en_0.wav")
    info = soundfile.info(os.path.join(cv, "clips", "common_voice_en_0.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    train_rows = rows_of(str(out_dir / "train.csv"))
    assert [r["wav_filename"].rsplit(".", 1)[1] for r in train_rows] == ["wav"] * 4
    with open(out_dir / "alphabet.txt", encoding="utf-8") as f:
        letters = {line.rstrip("\n") for line in f if not line.startswith("#")}
    assert {"a", "c", " "} <= letters and letters <= set(" abcdefghijklmnopqrstuvwxyz'")  # made from the kept rows
    assert "transcript rejected by the label rule" in out  # the Russian sentence: nothing left once ASCII
    status, out = run(train.main, ["--alphabet_config_path", str(out_dir / "alphabet.txt"), "--train_files",
                                   str(out_dir / "train.csv"), "--n_hidden", "16", "--epochs", "1",
                                   "--checkpoint_dir", str(tmp_path / "ckpt")], capsys)  # fmt: skip
    assert status == 0, out


def test_bad_common_voice_input_is_one_line(tmp_path, capsys):
    cv = tmp_path / "cv"
    (cv / "clips").mkdir(parents=True)
    (cv / "train.tsv").write_text("client_id\tpath\ttext\nx\ta.mp3\thello\n", encoding="utf-8")
    status, out = run(import_cv.main, [str(cv)], capsys)
    assert status == 1
    assert out.strip().splitlines() == [
        f"E {cv / 'train.tsv'}: missing TSV column 'sentence' (header is: client_id path text)"
    ]
    assert sorted(os.listdir(cv / "clips")) == []
    status, out = run(import_cv.main, [str(tmp_path)], capsys)
    assert status == 1 and "not a Common Voice folder" in out.strip().splitlines()[-1]
