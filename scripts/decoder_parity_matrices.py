"""Make tests/fixtures/decoder_parity/matrices.npz: real model outputs for tests/test_decoder_parity.py, which
decodes them with our beam search and with Coqui's decoder and requires the same candidates.

    python scripts/decoder_parity_matrices.py --asterisk ../shared/data/asterisk --transfer runs/lm

Every model is trained here through the command line, as a user would (and reused from --work if there):
the README's LDC93S1 job stopped at 100, 200 and 300 epochs; Coqui's CI job (249 epochs) at 16 and 8 kHz;
a bytes-output-mode LDC93S1 model at 300 and 600 epochs. With --transfer, the English asterisk model in
<transfer>/en and its Russian transfer (--drop_source_layers 1) in <transfer>/ru (docs/results.md,
"Language models", says how they were trained) are run on their test sets. The file holds each matrix's
softmax [frames, classes] (float32) under `<group>_<i>`, and `groups` (JSON): each group's alphabet ("bytes",
or the alphabet file's text) and where its matrices came from. These are inputs; the expected outputs come
from Coqui's decoder when the test runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from coqui_stt_training.checkpoints.load import load_model  # noqa: E402
from coqui_stt_training.decoding.evaluation import probabilities  # noqa: E402
from coqui_stt_training.flags.config import Config  # noqa: E402
from coqui_stt_training.flags.options import loader_settings  # noqa: E402
from coqui_stt_training.flags.services import data_set, resolve_alphabet  # noqa: E402

LDC = os.path.join(ROOT, "data", "smoke_test", "ldc93s1.csv")
ALPHABET = os.path.join(ROOT, "data", "alphabet.txt")
COMMON = ["--n_hidden", "100", "--learning_rate", "0.001", "--dropout_rate", "0.05", "--show_progressbar", "false"]
BYTES = ["--bytes_output_mode", "true", "--n_hidden", "200", "--learning_rate", "0.001", "--dropout_rate", "0",
         "--show_progressbar", "false"]  # fmt: skip


def trained(work: str, name: str, flags: list[str]) -> str:
    """A checkpoint directory trained on LDC93S1 with `flags` (reused when its run finished before)."""
    directory = os.path.join(work, name)
    if not os.path.isfile(os.path.join(directory, "best_dev_checkpoint")):
        command = [sys.executable, "-m", "coqui_stt_training.train", *flags, "--train_files", LDC, "--dev_files", LDC,
                   "--checkpoint_dir", directory, "--log_level", "2"]  # fmt: skip
        subprocess.run(command, check=True, cwd=ROOT)
    return directory


def outputs(checkpoint: str, csv: str, config: Config) -> list[np.ndarray]:
    """The model's softmax on every row of `csv`, as its decoder gets it."""
    config.finalize()
    alphabet = resolve_alphabet(config)
    loaded = load_model(checkpoint, alphabet, "best", torch.device("cpu"), config.relu_clip)
    samples = data_set(config, [csv], alphabet, "test")
    return [p for _, p in probabilities(loaded.model, samples, loaded.device, 1, loader_settings(config))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--asterisk", default=os.path.join(os.path.dirname(ROOT), "shared", "data", "asterisk"))
    parser.add_argument("--transfer", default="", help="a folder holding the en and ru models of docs/results.md")
    parser.add_argument("--work", default=os.path.join(ROOT, "runs", "parity"))
    parser.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "decoder_parity", "matrices.npz"))
    args = parser.parse_args()
    with open(ALPHABET, encoding="utf-8") as f:
        english = f.read()
    arrays: dict[str, np.ndarray] = {}
    groups: dict[str, dict] = {}

    def add(group: str, alphabet: str, source: str, matrices: list[np.ndarray]) -> None:
        groups[group] = {"alphabet": alphabet, "source": source, "count": len(matrices)}
        arrays.update({f"{group}_{i}": m.astype(np.float32) for i, m in enumerate(matrices)})
        print(f"{group}: {len(matrices)} matrices ({source})", flush=True)

    ldc = []
    for epochs in (100, 200, 300):
        ckpt = trained(
            args.work, f"readme-{epochs}", COMMON + ["--alphabet_config_path", ALPHABET, "--epochs", str(epochs)]
        )
        ldc += outputs(ckpt, LDC, Config(checkpoint_dir=ckpt, alphabet_config_path=ALPHABET, data_workers=0))
    for rate in (16000, 8000):
        flags = COMMON + ["--alphabet_config_path", ALPHABET, "--epochs", "249", "--audio_sample_rate", str(rate)]
        ckpt = trained(args.work, f"coqui-ci-{rate}", flags)
        config = Config(checkpoint_dir=ckpt, alphabet_config_path=ALPHABET, audio_sample_rate=rate, data_workers=0)
        ldc += outputs(ckpt, LDC, config)
    add("ldc", english, "LDC93S1: the README's job at 100, 200, 300 epochs; Coqui's CI job at 16 and 8 kHz", ldc)
    byte_outputs = []
    for epochs in (300, 600):
        ckpt = trained(args.work, f"bytes-{epochs}", BYTES + ["--epochs", str(epochs)])
        byte_outputs += outputs(ckpt, LDC, Config(checkpoint_dir=ckpt, bytes_output_mode=True, data_workers=0))
    add("bytes", "bytes", "LDC93S1, a bytes-output-mode model (n_hidden 200) at 300 and 600 epochs", byte_outputs)
    if args.transfer:
        for language in ("en", "ru"):
            ckpt = os.path.join(args.transfer, language)
            alphabet_path = os.path.join(ckpt, "alphabet.txt")
            with open(alphabet_path, encoding="utf-8") as f:
                text = f.read()
            config = Config(checkpoint_dir=ckpt, audio_sample_rate=8000, data_workers=0)
            csv = os.path.join(args.asterisk, language, "test.csv")
            source = f"asterisk/{language} test set, the " + (
                "English source" if language == "en" else "Russian transfer"
            )
            add(f"asterisk_{language}", text, source + " model of docs/results.md", outputs(ckpt, csv, config))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    np.savez_compressed(args.out, groups=np.array(json.dumps(groups, ensure_ascii=False)), **arrays)
    print(f"wrote {args.out} ({os.path.getsize(args.out) // 1024} KiB)")


if __name__ == "__main__":
    main()
