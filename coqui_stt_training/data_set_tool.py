"""Convert data sets, as Coqui's bin/data_set_tool.py did (data/repack.py does the work):

python -m coqui_stt_training.data_set_tool --sources train.csv more.sdb --target train.sdb [--audio_type opus]
python -m coqui_stt_training.data_set_tool --sources train.sdb --target train-wav.csv
"""

from __future__ import annotations

import argparse

from .data.repack import convert_data_sets
from .data.sdb import AUDIO_TYPES
from .flags.cli import run_guarded
from .system import log


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m coqui_stt_training.data_set_tool",
        description="Write CSV and SDB sources into one SDB, or into one CSV with WAV files beside it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--sources", nargs="+", default=[], help="CSV and SDB files, read in this order")
    parser.add_argument("--target", required=True, help="the .sdb or .csv to write (never overwritten)")
    parser.add_argument("--audio_type", choices=sorted(AUDIO_TYPES), default="opus", help="audio in an SDB target")
    parser.add_argument("--bitrate", type=int, default=16000, help="Opus bits per second")
    parser.add_argument("--workers", type=int, default=0, help="processes encoding audio (0: every CPU)")
    parser.add_argument("--log_level", type=int, default=1, choices=range(4), help="0 DEBUG, 1 INFO, 2 WARN, 3 ERROR")
    args = parser.parse_args(argv)
    log.set_level(args.log_level)
    run_guarded(
        lambda: convert_data_sets(args.sources, args.target, args.audio_type, args.bitrate, args.workers),
        args.log_level,
    )


if __name__ == "__main__":
    main()
