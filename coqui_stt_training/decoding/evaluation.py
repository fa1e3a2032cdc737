"""Testing a model: every sample's loss and transcript, WER and CER, and Coqui's report of the best,
median and worst samples (docs/compatibility.md, "Testing")."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..data.samples import Sample
from ..feeding.batches import LoaderSettings, data_loader
from ..model.deepspeech import DeepSpeech
from ..model.loss import ctc_loss
from ..system import log
from ..system.atomic_files import write_file_atomically
from ..system.distributed import World
from .beam_search import Decoder, utterance_probabilities


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


def levenshtein(a: Sequence, b: Sequence) -> int:
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


def totals(results: list[SampleResult]) -> tuple[float, float, float]:
    """WER and CER over the whole set (each capped at 1, as Coqui does) and the mean loss."""
    words = sum(r.word_length for r in results)
    chars = sum(r.char_length for r in results)
    wer = min(sum(r.word_distance for r in results) / words, 1.0) if words else 0.0
    cer = min(sum(r.char_distance for r in results) / chars, 1.0) if chars else 0.0
    return wer, cer, sum(r.loss for r in results) / max(len(results), 1)


def report_order(results: list[SampleResult], bytes_mode: bool) -> list[SampleResult]:
    """Coqui's order: best WER first (CER for bytes models), ties broken by the higher loss first."""
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


@torch.no_grad()
def evaluate_samples(
    model: DeepSpeech,
    samples: list[Sample],
    decoder: Decoder,
    device: torch.device,
    batch_size: int,
    loader: LoaderSettings,
    world: World = World(),
) -> list[SampleResult]:
    """Every sample's result; in a distributed run each rank does a share and all get every result."""
    model.eval()
    results = []
    for batch in data_loader(samples, batch_size, loader, train=False, world=world):
        logits = model.infer(batch.features.to(device))
        losses = ctc_loss(logits, batch.feature_lengths, batch.labels, batch.label_lengths)
        texts = decoder(logits, batch.feature_lengths)
        results += [score(s, t, float(loss)) for s, t, loss in zip(batch.samples, texts, losses)]
    return [r for part in world.gather(results) for r in part]


@torch.no_grad()
def probabilities(
    model: DeepSpeech, samples: list[Sample], device: torch.device, batch_size: int, loader: LoaderSettings
) -> list[tuple[Sample, np.ndarray]]:
    """Each sample with its probabilities [frames, classes] (the softmax the decoder takes): the model run
    once, so that a decoder can then be tried many ways (lm_optimize, the decoding benchmark)."""
    model.eval()
    out: list[tuple[Sample, np.ndarray]] = []
    for batch in data_loader(samples, batch_size, loader, train=False):
        out += zip(
            batch.samples, utterance_probabilities(model.infer(batch.features.to(device)), batch.feature_lengths)
        )
    return out


@dataclass(frozen=True)
class EvaluationSettings:
    """Coqui's test phase (the flags of the same names)."""

    batch_size: int = 1
    limit: int = 0  # samples per set (0: all)
    reverse: bool = False
    report_count: int = 5
    output_file: str = ""  # every sample's result as JSON ("": none)


def run_test(
    model: DeepSpeech,
    test_sets: list[tuple[str, list[Sample]]],
    decoder: Decoder,
    device: torch.device,
    settings: EvaluationSettings,
    loader: LoaderSettings,
    bytes_mode: bool,
    world: World = World(),
) -> list[SampleResult]:
    """Coqui's test phase: every set tested and reported separately, then every sample's result as JSON
    if asked for. `test_sets` are (path, samples) already read and checked."""
    everything = []
    for path, samples in test_sets:
        if settings.reverse:
            samples = samples[::-1]
        if settings.limit:
            samples = samples[: settings.limit]
        log.info(f"Testing model on {path}")
        results = evaluate_samples(model, samples, decoder, device, settings.batch_size, loader, world)
        if world.is_main:
            print_report(path, results, settings.report_count, bytes_mode)
        everything += report_order(results, bytes_mode)
    if settings.output_file and world.is_main:
        write_file_atomically(
            settings.output_file, json.dumps([asdict(r) for r in everything], indent=2, ensure_ascii=False)
        )
    return everything
