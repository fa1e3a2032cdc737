"""Common Voice to training CSVs, in one command (Coqui's bin/import_cv2.py; data/common_voice.py does the work):

    python -m coqui_stt_training.import_cv cv-corpus-20.0/eo/ [--filter_alphabet alphabet.txt] [--normalize]

writes train.csv, dev.csv, test.csv (and validated.csv, other.csv, train-all.csv where the TSVs are there),
an alphabet.txt of the kept transcripts, and import_cv-skipped.csv, into the clips folder as Coqui did
(--output_dir elsewhere). The MP3 clips are used in place; --audio_format wav converts them.
"""

from __future__ import annotations

import argparse

from .data.common_voice import ImportOptions, import_common_voice
from .flags.cli import run_guarded
from .system import log


def parse_args(argv: list[str] | None) -> tuple[ImportOptions, int]:
    parser = argparse.ArgumentParser(
        prog="python -m coqui_stt_training.import_cv",
        description="Import a Common Voice release folder (TSVs and clips/) as training CSVs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("cv_dir", help="the folder with train.tsv, dev.tsv, test.tsv, ... and clips/")
    parser.add_argument("--audio_dir", default="", help="the clips' folder (default: CV_DIR/clips)")
    parser.add_argument("--output_dir", default="", help="where the CSVs go (default: the clips' folder, as Coqui)")
    parser.add_argument("--filter_alphabet", default="", help="skip rows with characters this alphabet lacks")
    parser.add_argument("--normalize", action="store_true", help="fold transcripts to ASCII (NFKD), as Coqui")
    parser.add_argument("--validate_label_locale", default="", help="a Python file defining validate_label(label)")
    parser.add_argument("--space_after_every_character", action="store_true", help="'abc' becomes 'a b c'")
    parser.add_argument("--min_duration", type=float, default=0.0, help="skip clips shorter than this (s)")
    parser.add_argument("--max_duration", type=float, default=10.0, help="skip clips longer than this (s)")
    parser.add_argument(
        "--audio_format", choices=("mp3", "wav"), default="mp3",
        help="mp3: the clips as they are; wav: converted to --sample_rate mono WAV beside them",
    )  # fmt: skip
    parser.add_argument("--sample_rate", type=int, default=16000, help="the WAVs' rate with --audio_format wav")
    parser.add_argument("--workers", type=int, default=0, help="processes checking or converting clips (0: all CPUs)")
    parser.add_argument("--force", action="store_true", help="replace the CSVs and alphabet of an earlier import")
    parser.add_argument("--log_level", type=int, default=1, choices=range(4), help="0 DEBUG, 1 INFO, 2 WARN, 3 ERROR")
    args = vars(parser.parse_args(argv))
    log_level = args.pop("log_level")
    return ImportOptions(**args), log_level


def main(argv: list[str] | None = None) -> None:
    options, log_level = parse_args(argv)
    log.set_level(log_level)
    run_guarded(lambda: import_common_voice(options), log_level)


if __name__ == "__main__":
    main()
