"""Listen to augmented samples before a day of training, as Coqui's bin/play.py did:

python -m coqui_stt_training.play --sources train.csv --augment "reverb[delay=50]" --number 5 --wav out_dir/
python -m coqui_stt_training.play --source LDC93S1.wav --augment volume --pipe true > louder.wav

The sample-domain augmentations (overlay, codec, reverb, resample, volume) are applied at --clock (0: as
at the start of training, 1: at its end) with draws from --random_seed, so a second run writes the same
bytes. The later domains change spectrograms and features, not audio: they are named and left out.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

import numpy as np
import soundfile

from .data import audio
from .data.samples import read_sample_audio, read_source
from .feeding import augment
from .feeding.augment import SAMPLE, in_domain, parse_augmentations
from .feeding.augment_audio import augment_audio
from .flags.cli import run_guarded
from .system import log
from .system.errors import UserError


def boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not true or false: {text}")


def play(args: argparse.Namespace) -> None:
    augmentations = parse_augmentations(args.augment)
    left_out = [a.name for a in augmentations if a.domain != SAMPLE]
    if left_out and not args.quiet:
        log.warn(f"Not simulated here (they change spectrograms or features, not audio): {' '.join(left_out)}")
    if not args.pipe and not args.wav:
        raise UserError("give --wav DIR to write the augmented samples, or --pipe true to write one to stdout")
    samples = [s for source in args.sources for s in read_source(source, labeled=False)]
    if not samples:
        raise UserError(f"{' '.join(args.sources)}: no samples")
    number = 1 if args.pipe else (args.number if args.number >= 0 else len(samples))
    rng = np.random.default_rng(args.random_seed)
    for n in range(number):
        index = int(rng.integers(len(samples))) if args.random else (args.start + n) % len(samples)
        sample = samples[index]
        signal, rate = read_sample_audio(sample)
        draws = np.random.default_rng(augment.seed(args.random_seed, 0, n, SAMPLE))
        signal = augment_audio(signal, rate, in_domain(augmentations, SAMPLE), args.clock, draws)
        wav = io.BytesIO()
        soundfile.write(wav, audio.to_pcm16(signal), rate, format="WAV", subtype="PCM_16")
        if not args.quiet:
            print(f'Sample "{sample.wav_filename}"' + (f'\n  "{sample.transcript}"' if sample.transcript else ""),
                  file=sys.stderr)  # fmt: skip
        if args.pipe:
            sys.stdout.buffer.write(wav.getvalue())
            sys.stdout.buffer.flush()
            return
        name = os.path.splitext(os.path.basename(sample.wav_filename.replace(":", "-")))[0]
        target = os.path.join(args.wav, f"{n:04d}-{name}.wav")
        os.makedirs(args.wav, exist_ok=True)
        try:
            with open(target, "xb") as f:  # never over a file already there
                f.write(wav.getvalue())
        except FileExistsError:
            raise UserError(f"{target}: exists; give another --wav folder") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m coqui_stt_training.play",
        description="Write samples (of CSV, SDB or shard sources, or audio files) with augmentations applied.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--sources", "--source", nargs="+", required=True, help="data sources or audio files")
    parser.add_argument("--augment", nargs="+", default=[], help="as training's --augment")
    parser.add_argument("--start", type=int, default=0, help="first sample's index (negative: from the end)")
    parser.add_argument("--number", type=int, default=-1, help="samples to write (-1: all)")
    parser.add_argument("--random", type=boolean, default=False, help="samples in random order")
    parser.add_argument("--clock", type=float, default=0.5, help="training's clock, 0 (start) to 1 (end)")
    parser.add_argument("--random_seed", type=int, default=4568, help="the draws' seed: same seed, same bytes")
    parser.add_argument("--wav", default="", help="folder to write the samples into, as NNNN-<name>.wav")
    parser.add_argument("--pipe", type=boolean, default=False, help="write the first sample as WAV to stdout")
    parser.add_argument("--quiet", type=boolean, default=False, help="no sample names on stderr")
    args = parser.parse_args(argv)
    run_guarded(lambda: play(args), log.INFO)


if __name__ == "__main__":
    main()
