"""The sample-domain augmentations (overlay, codec, reverb, resample, volume): numpy on one utterance's audio,
in the data workers, as Coqui's util/augmentations.py defines them (docs/compatibility.md "Augmentation").

Levels are Coqui's "dBFS": the peak sample's level plus 3.0103 dB (a full-scale sine's RMS is then 0 dBFS),
and `volume` and `overlay` and `reverb` normalise to such a peak, clipping at full scale.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..data import audio, sdb
from ..data.samples import MAX_LISTED_PER_KIND, Sample, audio_length, load_sample_audio, read_source
from ..system.errors import UserError
from .augment import SAMPLE, Augmentation, AugmentationError, in_domain

REVERB_PRIMES = (17, 19, 23, 29, 31)  # delays in these ratios keep the echoes from lining up as a comb
MIN_REVERB_DELAY = 16  # samples


def peak_dbfs(samples: np.ndarray) -> float:
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    return 20.0 * math.log10(max(1e-16, peak)) + 3.0103


def gain(db: float) -> float:
    return math.pow(10.0, db / 20.0)


def normalize(samples: np.ndarray, dbfs: float) -> np.ndarray:
    return np.clip(samples * gain(dbfs - peak_dbfs(samples)), -1.0, 1.0)


def augment_audio(
    samples: np.ndarray, rate: int, augmentations: list[Augmentation], clock: float, rng: np.random.Generator
) -> np.ndarray:
    """One utterance through the sample-domain augmentations, each with its probability."""
    for a in in_domain(augmentations, SAMPLE):
        if rng.random() < a.p:
            samples = APPLY[a.name](samples, rate, a, clock, rng).astype(np.float32, copy=False)
    return samples


def overlay(samples: np.ndarray, rate: int, a: Augmentation, clock: float, rng: np.random.Generator) -> np.ndarray:
    """`layers` runs of the source's clips laid end to end from a random clip and offset, mixed in at `snr` dB
    below the utterance's peak; the result has the utterance's peak level."""
    source = str(a.settings["source"])
    count = len(overlay_source(source))
    mixed = np.zeros(len(samples), np.float64)
    for _ in range(max(0, int(a.pick("layers", clock, rng)))):
        index = int(rng.integers(count))
        offset = int(rng.integers(max(1, len(overlay_clip(source, index, rate)))))
        at, empty_in_a_row = 0, 0
        while at < len(samples) and empty_in_a_row < count:
            piece = overlay_clip(source, index, rate)[offset : offset + len(samples) - at]
            mixed[at : at + len(piece)] += piece
            empty_in_a_row = 0 if len(piece) else empty_in_a_row + 1
            at, index, offset = at + len(piece), (index + 1) % count, 0
    level = peak_dbfs(samples)
    result = samples + mixed * gain(level - peak_dbfs(mixed) - a.pick("snr", clock, rng))
    return normalize(result, level)


@functools.lru_cache(maxsize=4)
def overlay_source(source: str) -> list[Sample]:
    """An overlay source's clips (any data source, or one audio file), listed once per process."""
    clips = read_source(source, labeled=False)
    if not clips:
        raise AugmentationError(f"--augment overlay: {source} has no audio to overlay")
    return clips


def check_overlay_sources(augmentations: list[Augmentation]) -> None:
    """Every overlay source listed and each clip's audio header read before training starts: a missing noise file
    found in the dummy run would be found after the run had written into its directory."""
    for a in augmentations:
        if a.name != "overlay":
            continue
        where = f"--augment overlay: source={a.settings['source']}"
        try:
            clips = overlay_source(str(a.settings["source"]))
        except UserError as e:
            raise AugmentationError(f"{where}: {e}") from None
        problems = []
        for clip in clips:
            try:
                audio_length(clip)
            except audio.AudioError as e:
                problems.append(f"    {clip.where}: {e}")
        if problems:
            more = len(problems) - MAX_LISTED_PER_KIND
            listed = problems[:MAX_LISTED_PER_KIND] + ([f"    ... and {more} more"] if more > 0 else [])
            raise AugmentationError(f"{where}: {len(problems)} clip(s) cannot be read:\n" + "\n".join(listed))


@functools.lru_cache(maxsize=64)
def overlay_clip(source: str, index: int, rate: int) -> np.ndarray:
    """One clip's audio at `rate`, read when first laid (a large noise set is never read whole)."""
    return load_sample_audio(overlay_source(source)[index], rate).astype(np.float64)


def codec(samples: np.ndarray, rate: int, a: Augmentation, clock: float, rng: np.random.Generator) -> np.ndarray:
    """An Opus round trip at `bitrate` bits per second, in Coqui's SDB container; the length is kept."""
    bitrate = int(a.pick("bitrate", clock, rng))
    decoded, decoded_rate = sdb.decode_chunk(sdb.encode_chunk(samples, rate, sdb.OPUS, bitrate), sdb.OPUS)
    return fit(audio.resample(decoded, decoded_rate, rate), len(samples))


def reverb(samples: np.ndarray, rate: int, a: Augmentation, clock: float, rng: np.random.Generator) -> np.ndarray:
    """Five echo trains with delays in prime ratios from `delay` ms, each echo `decay` dB below the last
    (Coqui's recursion: every window adds the decayed window before it, already echoed)."""
    x = samples.astype(np.float64)
    delay, decay = a.pick("delay", clock, rng), gain(-a.pick("decay", clock, rng))
    result = x.copy()
    for prime in REVERB_PRIMES:
        layer = x.copy()
        n = max(MIN_REVERB_DELAY, math.floor(delay * (prime / REVERB_PRIMES[0]) * rate / 1000.0))
        for start in range(n, len(x), n):
            width = min(len(x) - start, n)
            layer[start : start + width] += decay * layer[start - n : start - n + width]
        result += layer
    return normalize(result, peak_dbfs(x))


def resample(samples: np.ndarray, rate: int, a: Augmentation, clock: float, rng: np.random.Generator) -> np.ndarray:
    """Down to `rate` and back: what a narrower channel leaves of the utterance."""
    low = max(1, int(a.pick("rate", clock, rng)))
    return fit(audio.resample(audio.resample(samples, rate, low), low, rate), len(samples))


def volume(samples: np.ndarray, rate: int, a: Augmentation, clock: float, rng: np.random.Generator) -> np.ndarray:
    """The utterance normalised to a peak of `dbfs`."""
    return normalize(samples, a.pick("dbfs", clock, rng))


def fit(samples: np.ndarray, length: int) -> np.ndarray:
    return samples[:length] if len(samples) >= length else np.pad(samples, (0, length - len(samples)))


APPLY = {"overlay": overlay, "codec": codec, "reverb": reverb, "resample": resample, "volume": volume}
