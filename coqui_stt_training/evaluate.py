"""Testing a model: per-sample loss and transcript, WER/CER totals and Coqui's report (spec §8).

python -m coqui_stt_training.evaluate --checkpoint_dir ckpt/ --test_files test.csv
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import log
from .data import DataError, Sample, data_loader, load_data_set
from .decode import Decoder, make_decoder, utterance_log_probs
from .distributed import World
from .model import DeepSpeech, ctc_loss


@dataclass
class SampleResult:
    wav_filename: str
    src: str
    res: str
    loss: float
    char_distance: int
    char_length: int
    word_distance: int
    word_length: int
    cer: float
    wer: float


def levenshtein(a, b) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def score(sample: Sample, prediction: str, loss: float) -> SampleResult:
    truth = sample.transcript
    char_distance, word_distance = levenshtein(truth, prediction), levenshtein(truth.split(), prediction.split())
    char_length, word_length = len(truth), len(truth.split())
    return SampleResult(
        sample.wav_filename,
        truth,
        prediction,
        loss,
        char_distance,
        char_length,
        word_distance,
        word_length,
        char_distance / char_length if char_length else 0.0,
        word_distance / word_length if word_length else 0.0,
    )


@torch.no_grad()
def evaluate_samples(
    model: DeepSpeech,
    samples: list[Sample],
    config,
    decoder: Decoder,
    device: torch.device,
    batch_size: int | None = None,
    world: World = World(),
) -> list[SampleResult]:
    """Every sample's result; in a distributed run each rank does a share and all get every result."""
    model.eval()
    results = []
    for batch in data_loader(samples, batch_size or config.test_batch_size, config, train=False, world=world):
        features = batch.features.to(device)
        logits = model(features)
        losses = ctc_loss(logits, batch.feature_lengths, batch.labels, batch.label_lengths)
        texts = decoder(logits, batch.feature_lengths)
        results += [score(s, t, float(l)) for s, t, l in zip(batch.samples, texts, losses)]
    return [r for part in world.gather(results) for r in part]


@torch.no_grad()
def log_probabilities(
    model: DeepSpeech, samples: list[Sample], config, device: torch.device, batch_size: int
) -> list[tuple[Sample, np.ndarray]]:
    """Each sample with its log-probabilities [frames, classes]: the model run once, so that a decoder
    can then be tried many ways (lm_optimize, the decoding benchmark)."""
    model.eval()
    out = []
    for batch in data_loader(samples, batch_size, config, train=False):
        out += zip(batch.samples, utterance_log_probs(model(batch.features.to(device)), batch.feature_lengths))
    return out


def totals(results: list[SampleResult]) -> tuple[float, float, float]:
    """WER and CER over the whole set (each capped at 1, as Coqui does) and the mean loss."""
    words = sum(r.word_length for r in results)
    chars = sum(r.char_length for r in results)
    wer = min(sum(r.word_distance for r in results) / words, 1.0) if words else 0.0
    cer = min(sum(r.char_distance for r in results) / chars, 1.0) if chars else 0.0
    return wer, cer, sum(r.loss for r in results) / max(len(results), 1)


def report_order(results: list[SampleResult], bytes_mode: bool) -> list[SampleResult]:
    by_loss = sorted(results, key=lambda r: r.loss, reverse=True)
    return sorted(by_loss, key=lambda r: r.cer if bytes_mode else r.wer)


def print_report(path: str, results: list[SampleResult], report_count: int, bytes_mode: bool) -> None:
    wer, cer, loss = totals(results)
    ordered = report_order(results, bytes_mode)
    line = "-" * 80
    print(f"Test on {path} - WER: {wer:f}, CER: {cer:f}, loss: {loss:f}")
    print(line)
    middle = max(len(ordered) // 2 - report_count // 2, 0)
    for title, part in (
        ("Best WER:", ordered[:report_count]),
        ("Median WER:", ordered[middle : middle + report_count]),
        ("Worst WER:", ordered[-report_count:]),
    ):
        print(title)
        print(line)
        for r in part:
            print(f"WER: {r.wer:f}, CER: {r.cer:f}, loss: {r.loss:f}")
            print(f" - wav: {r.wav_filename}")
            print(f' - src: "{r.src}"')
            print(f' - res: "{r.res}"')
            print(line)
    sys.stdout.flush()


def test(
    model: DeepSpeech,
    config,
    alphabet,
    device: torch.device,
    test_sets: list[tuple[str, list[Sample]]] | None = None,
    world: World = World(),
) -> list[SampleResult]:
    """Coqui's test phase: every --test_files set, reported separately; optional JSON of every sample.
    `test_sets` are the sets already read and checked (training checks them before its first step)."""
    decoder = make_decoder(config, alphabet)
    if test_sets is None:
        test_sets = [(path, load_data_set([path], alphabet, config, "test")) for path in config.test_files]
    everything = []
    for path, samples in test_sets:
        if config.reverse_test:
            samples = samples[::-1]
        if config.limit_test:
            samples = samples[: config.limit_test]
        log.info(f"Testing model on {path}")
        results = evaluate_samples(model, samples, config, decoder, device, world=world)
        if world.is_main:
            print_report(path, results, config.report_count, alphabet.is_bytes)
        everything += report_order(results, alphabet.is_bytes)
    if config.test_output_file and world.is_main:
        with open(config.test_output_file, "w", encoding="utf-8") as f:
            json.dump([asdict(r) for r in everything], f, indent=2, ensure_ascii=False)
    return everything


def one_shot_infer(config, model: DeepSpeech, alphabet, device: torch.device) -> str:
    """Coqui's --one_shot_infer: print the transcript of one audio file, decoded with --beam_width (not
    --export_beam_width) and the --scorer_path scorer, if any. Unlike Coqui, which read the WAV at its own
    rate, the audio is resampled to --audio_sample_rate, and any format the data sets accept is read."""
    from .audio import load_audio
    from .decode import beam_search_decode
    from .features import mfcc_of_signals
    from .scorer import load_scorer

    path = config.one_shot_infer
    if not os.path.isfile(path):
        raise DataError(f"Path specified in --one_shot_infer is not a valid file: {path}")
    features, lengths = mfcc_of_signals(
        [load_audio(path, config.audio_sample_rate)],
        config.audio_sample_rate,
        config.feature_win_len,
        config.feature_win_step,
    )
    with torch.no_grad():
        logits = model.eval()(features.to(device))
    text = beam_search_decode(
        logits,
        lengths,
        alphabet,
        config.beam_width,
        config.cutoff_prob,
        config.cutoff_top_n,
        load_scorer(config, alphabet),
    )[0]
    print(text, flush=True)
    return text


def main(argv: list[str] | None = None) -> None:
    from .train import run_cli, setup_evaluation

    def evaluate(config):
        if not config.test_files:
            raise SystemExit("E You need to specify what files to use for evaluation via the --test_files flag.")
        model, alphabet, device = setup_evaluation(config, config.load_checkpoint_dir)
        test(model, config, alphabet, device)

    run_cli(evaluate, argv, "python -m coqui_stt_training.evaluate")


if __name__ == "__main__":
    main()
