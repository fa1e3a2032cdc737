"""Beam-search time per audio second, with and without a Coqui scorer, at beam widths 1, 100 and 500.

    python benchmarks/decode.py [--checkpoint_dir runs/ldc93s1] [--test_files data/smoke_test/ldc93s1.csv]
        [--scorer_path data/smoke_test/pruned_lm.scorer]

The acoustic model runs once per file (not timed); the decoder then runs on its output at each width, the best
of five runs.
The default checkpoint is the one the README's first command trains.
"""

from __future__ import annotations

import argparse
import time

import torch

from coqui_stt_training.checkpoints.flags_txt import read_flags_file
from coqui_stt_training.decoding.beam_search import DecodeOptions, beam_search
from coqui_stt_training.decoding.evaluation import log_probabilities
from coqui_stt_training.decoding.scorer import Scorer
from coqui_stt_training.flags.config import Config
from coqui_stt_training.flags.options import loader_settings
from coqui_stt_training.flags.services import data_set, model_for

REPEATS = 5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint_dir", default="runs/ldc93s1")
    parser.add_argument("--test_files", default="data/smoke_test/ldc93s1.csv")
    parser.add_argument("--scorer_path", default="data/smoke_test/pruned_lm.scorer")
    parser.add_argument("--audio_sample_rate", type=int, default=16000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = Config(checkpoint_dir=args.checkpoint_dir, audio_sample_rate=args.audio_sample_rate, data_workers=0)
    config.finalize().adopt_source_flags(read_flags_file(args.checkpoint_dir))
    loaded = model_for(config, args.checkpoint_dir)
    alphabet = loaded.alphabet
    samples = data_set(config, [args.test_files], alphabet, "test")
    outputs = [lp for _, lp in log_probabilities(loaded.model, samples, loaded.device, 1, loader_settings(config))]
    seconds = sum(s.duration for s in samples)
    scorer = Scorer(args.scorer_path, alphabet, config.lm_alpha, config.lm_beta)
    print(f"{len(outputs)} file(s), {seconds:.1f} s of audio, one core; seconds of decoding per audio second:")
    for width in (1, 100, 500):
        timings = {}
        options = DecodeOptions(width, config.cutoff_prob, config.cutoff_top_n)
        for name, lm in (("no scorer", None), ("with scorer", scorer)):
            best = float("inf")
            for _ in range(REPEATS):  # the best of several: one decode of a short file is at the mercy of the machine
                start = time.perf_counter()
                texts = [alphabet.decode(beam_search(lp, options, lm)) for lp in outputs]
                best = min(best, time.perf_counter() - start)
            timings[name] = best / seconds
        print(
            f"  width {width:3d}: no scorer {timings['no scorer']:.4f}, with scorer {timings['with scorer']:.4f} "
            f"(first result with scorer: {texts[0]!r})"
        )


if __name__ == "__main__":
    main()
