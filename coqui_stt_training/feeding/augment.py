"""Coqui's --augment language (spec §10, docs/compatibility.md "Augmentation"): parsing, value ranges, the
training clock, and where each augmentation's random draws come from.

`--augment "overlay[p=0.1,source=noise.csv,snr=20~10]" volume "tempo[factor=1.1:1.0]"`: a snake_case name,
optionally `[key=value,...]`. Every augmentation takes `p` (the probability that a sample gets it). A value
is `v`, `v~r` (uniform in v-r..v+r), `a:b` (from a at the start of training to b at its end, following the
clock) or `a:b~r`; integer parameters round what they draw. The sample domain (audio in the data workers,
augment_audio.py) comes first, then signal, spectrogram and features (batched in torch on the training
device, augment_batch.py); within a domain the command line's order is kept.

Every draw comes from generators seeded by the run's --random_seed, the epoch and the sample's place in the
epoch, never from a global generator: the same flags give the same augmented batches, with any number of
data workers, and a resumed run draws what the uninterrupted one would have drawn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..system.errors import UserError
from ..system.intervals import in_interval

SAMPLE, SIGNAL, SPECTROGRAM, FEATURES = "sample", "signal", "spectrogram", "features"
DOMAIN_ORDER = (SAMPLE, SIGNAL, SPECTROGRAM, FEATURES)
SPEC = re.compile(r"^(?P<name>[a-z_]+)(\[(?P<params>.*)\])?$")


class AugmentationError(UserError):
    pass


@dataclass(frozen=True)
class ValueRange:
    """`start:end~radius`; integer ranges round what they draw."""

    start: float
    end: float
    radius: float = 0.0
    integer: bool = False

    def pick(self, clock: float, rng: np.random.Generator) -> float:
        """The value at `clock` (0 at the start of training, 1 at its end), drawn within the radius."""
        centre = self.start + min(1.0, max(0.0, clock)) * (self.end - self.start)
        value = float(rng.uniform(centre - self.radius, centre + self.radius)) if self.radius else centre
        return float(round(value)) if self.integer else value

    @property
    def bounds(self) -> tuple[float, float]:
        low, high = min(self.start, self.end) - self.radius, max(self.start, self.end) + self.radius
        return (float(round(low)), float(round(high))) if self.integer else (low, high)


# name -> (domains it may run in, the first being its default; its parameters: kind and default)
# kinds: "float" and "int" are ValueRanges, "number" a plain float, "text" a string
PARAMETERS: dict[str, tuple[tuple[str, ...], dict[str, tuple[str, object]]]] = {
    "overlay": ((SAMPLE,), {"source": ("text", None), "snr": ("float", "3.0"), "layers": ("int", "1")}),
    "codec": ((SAMPLE,), {"bitrate": ("int", "3200")}),
    "reverb": ((SAMPLE,), {"delay": ("float", "20.0"), "decay": ("float", "10.0")}),
    "resample": ((SAMPLE,), {"rate": ("int", "8000")}),
    "volume": ((SAMPLE,), {"dbfs": ("float", "3.0103")}),
    "pitch": ((SPECTROGRAM,), {"pitch": ("float", "1.075~0.125")}),
    "tempo": ((SPECTROGRAM,), {"factor": ("float", "1.1"), "max_time": ("number", "-1")}),
    "warp": (
        (SPECTROGRAM,),
        {"num_t": ("int", "1"), "num_f": ("int", "1"), "warp_t": ("float", "0.1"), "warp_f": ("float", "0.0")},
    ),
    "frequency_mask": ((SPECTROGRAM,), {"n": ("int", "3"), "size": ("int", "2")}),
    "time_mask": ((SPECTROGRAM, SIGNAL, FEATURES), {"n": ("int", "3"), "size": ("float", "10.0")}),
    "dropout": ((SPECTROGRAM, SIGNAL, FEATURES), {"rate": ("float", "0.05")}),
    "add": ((FEATURES, SIGNAL, SPECTROGRAM), {"stddev": ("float", "5")}),
    "multiply": ((FEATURES, SIGNAL, SPECTROGRAM), {"stddev": ("float", "5")}),
}


# What each parameter may range over: what the augmentation can do (a tempo factor of 0 would stretch an utterance
# without end, a mask count in the millions would take minutes per batch), checked over a range's whole extent
# (start, end and radius) before anything is read or written.
BOUNDS: dict[str, dict[str, str]] = {
    "overlay": {"snr": "[-100, 100]", "layers": "[1, 100]"},
    "codec": {"bitrate": "[500, 512000]"},  # Opus's bit rates
    "reverb": {"delay": "[0, 10000]", "decay": "[0, 100]"},
    "resample": {"rate": "[1000, 384000]"},
    "volume": {"dbfs": "[-120, 40]"},
    "pitch": {"pitch": "(0, 10]"},
    "tempo": {"factor": "(0, 10]"},
    "warp": {"num_t": "[0, 100]", "num_f": "[0, 100]", "warp_t": "[0, 1]", "warp_f": "[0, 1]"},
    "frequency_mask": {"n": "[0, 100]", "size": "[0, 1000]"},
    "time_mask": {"n": "[0, 1000]", "size": "[0, 60000]"},  # size in ms
    "dropout": {"rate": "[0, 1]"},
    "add": {"stddev": "[0, 1000]"},
    "multiply": {"stddev": "[0, 1000]"},
}


@dataclass(frozen=True)
class Augmentation:
    name: str
    domain: str
    p: float
    values: dict[str, ValueRange] = field(default_factory=dict)  # the ranges, by parameter
    settings: dict[str, object] = field(default_factory=dict)  # plain numbers and text (max_time, source)

    def pick(self, parameter: str, clock: float, rng: np.random.Generator) -> float:
        return self.values[parameter].pick(clock, rng)


def camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def parse_value_range(text: str, integer: bool) -> ValueRange:
    """`v`, `v~r`, `a:b`, `a:b~r`; a ValueError for anything else."""
    value, _, radius = text.partition("~")
    start, _, end = value.partition(":")
    low, high, r = float(start), float(end or start), float(radius or 0)
    if integer:  # as Coqui: an integer parameter's bounds are integers
        low, high, r = float(int(low)), float(int(high)), float(int(r))
    return ValueRange(low, high, r, integer)


def parse_augmentation(spec: str) -> Augmentation:
    match = SPEC.match(spec.strip())
    if not match:
        raise AugmentationError(f"--augment {spec}: not name[key=value,...]")
    name = match.group("name")
    if name not in PARAMETERS:
        raise AugmentationError(f"Unknown augmentation: {camel(name)} (--augment {spec})")
    domains, parameters = PARAMETERS[name]
    given: dict[str, str] = {}
    for pair in filter(None, (match.group("params") or "").split(",")):
        key, equals, value = (part.strip() for part in pair.partition("="))
        if not equals:
            raise AugmentationError(f"--augment {spec}: '{pair}' is not key=value")
        given[key] = value
    known = ["p", "domain", *parameters] if len(domains) > 1 else ["p", *parameters]
    for key in given:
        if key not in known:
            raise AugmentationError(f"--augment {spec}: {name} has no parameter '{key}' (it takes {', '.join(known)})")
    domain = given.get("domain", domains[0])
    if domain not in domains:
        where = " or ".join([", ".join(domains[:-1]), domains[-1]] if len(domains) > 1 else domains)
        raise AugmentationError(f"--augment {spec}: {name} runs in the {where} domain, not '{domain}'")
    values, settings = {}, {}
    for key, (kind, default) in parameters.items():
        text = given.get(key, default)
        if text is None:
            raise AugmentationError(f"--augment {spec}: {name} needs {key}=...")
        try:
            if kind in ("float", "int"):
                values[key] = parse_value_range(str(text), integer=kind == "int")
            else:
                settings[key] = float(str(text)) if kind == "number" else text
        except ValueError:
            raise AugmentationError(
                f"--augment {spec}: {key}={text} is not a number or a range (v, v~r, a:b or a:b~r)"
            ) from None
    for key, value_range in values.items():
        interval = BOUNDS[name][key]
        if not all(in_interval(bound, interval) for bound in value_range.bounds):
            low, high = value_range.bounds
            reach = f"{key} {low:g}" if low == high else f"{key} ranges from {low:g} to {high:g}"
            raise AugmentationError(f"--augment {spec}: {reach}, outside {interval}")
    try:
        p = float(given.get("p", "1.0"))
    except ValueError:
        raise AugmentationError(f"--augment {spec}: p={given['p']} is not a number") from None
    if not 0.0 <= p <= 1.0:
        raise AugmentationError(f"--augment {spec}: p={p:g} is not a probability (0 to 1)")
    return Augmentation(name, domain, p, values, settings)


def parse_augmentations(specs: list[str] | None) -> list[Augmentation]:
    """The command line's augmentations in the order they run: by domain, then as given."""
    parsed = [parse_augmentation(s) for s in specs or []]
    return sorted(parsed, key=lambda a: DOMAIN_ORDER.index(a.domain))


def in_domain(augmentations: list[Augmentation], *domains: str) -> list[Augmentation]:
    return [a for a in augmentations if a.domain in domains]


def clock(epoch: int, position: int, per_epoch: int, epochs: int) -> float:
    """Coqui's training clock: the share of all training samples seen before this one (0 to 1)."""
    return (epoch * per_epoch + position) / (epochs * per_epoch) if per_epoch and epochs > 0 else 0.0


def seed(random_seed: int, epoch: int, position: int, domain: str) -> np.random.SeedSequence:
    """The seed of one sample's draws (or one batch's, position being the batch's): the same for a resumed run."""
    return np.random.SeedSequence([random_seed, epoch, position, DOMAIN_ORDER.index(domain)])
