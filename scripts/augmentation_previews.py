"""Before/after pictures of the spectrogram-domain augmentations on LDC93S1, for the README.

    python scripts/augmentation_previews.py [--out docs/augmentations]

One PNG per augmentation (pitch, tempo, warp, frequency_mask, time_mask, dropout): the log power spectrogram
of LDC93S1 as training computes it (top), and the same after the augmentation at p=1 with draws from seed
4568 (bottom); time runs to the right, frequency up. Written with zlib, no plotting library.
"""

from __future__ import annotations

import argparse
import os
import struct
import zlib

import numpy as np
import torch

from coqui_stt_training.data.audio import load_audio
from coqui_stt_training.feeding.augment import parse_augmentation, seed
from coqui_stt_training.feeding.augment_batch import APPLY, Draws, seeded_generator
from coqui_stt_training.model.features import FeatureSettings, power_spectrogram

SPECS = {
    "pitch": "pitch[pitch=1.2]",
    "tempo": "tempo[factor=0.8]",
    "warp": "warp[warp_t=0.3]",
    "frequency_mask": "frequency_mask[n=2,size=20]",
    "time_mask": "time_mask[n=3,size=150]",
    "dropout": "dropout[rate=0.3]",
}
X_SCALE = 3  # pixels per frame
GAP = 6  # rows between before and after


def write_png(path: str, pixels: np.ndarray) -> None:
    """An 8-bit greyscale PNG of a [height, width] uint8 array."""
    height, width = pixels.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def image(power: np.ndarray, low: float, high: float, width: int) -> np.ndarray:
    levels = np.log10(np.maximum(power, 1e-10))
    scaled = np.clip((levels - low) / (high - low), 0, 1)
    picture = (255 * (1 - scaled)).astype(np.uint8)[:, ::-1].T  # dark is loud; low frequencies at the bottom
    picture = np.repeat(picture, X_SCALE, axis=1)
    return np.pad(picture, ((0, 0), (0, width - picture.shape[1])), constant_values=255)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/augmentations")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    settings = FeatureSettings()
    power = power_spectrogram(load_audio("data/smoke_test/LDC93S1.wav", settings.sample_rate), settings)
    levels = np.log10(np.maximum(power, 1e-10))
    low, high = np.percentile(levels, 5), levels.max()
    for name, spec in SPECS.items():
        a = parse_augmentation(spec)
        numbers, tensors = seed(4568, 0, 0, "spectrogram").spawn(2)
        draws = Draws(0.5, np.random.default_rng(numbers), seeded_generator(tensors, torch.device("cpu")))
        after = APPLY[name](torch.from_numpy(power), a, draws, settings, 53, "spectrogram").numpy()
        width = X_SCALE * max(len(power), len(after))
        before_image, after_image = image(power, low, high, width), image(after, low, high, width)
        picture = np.concatenate([before_image, np.full((GAP, width), 255, np.uint8), after_image])
        path = os.path.join(args.out, f"{name}.png")
        write_png(path, picture)
        print(f"{path}: {spec}, {len(power)} -> {len(after)} frames")


if __name__ == "__main__":
    main()
