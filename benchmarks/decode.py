"""Decoding speed, ours against Coqui's own decoder, on the same probability matrices, on one core.

    python benchmarks/decode.py [--matrices tests/fixtures/decoder_parity/matrices.npz] [--repeats 3]

The matrices are real model outputs (scripts/decoder_parity_matrices.py): the LDC93S1 models and the English
asterisk model (29 classes, with Coqui's pruned_lm.scorer), the Russian transfer (35 classes, with the scorer
this project builds from the asterisk training transcripts) and the bytes-output-mode models (256 classes,
with pruned_lm.bytes.scorer). For each, at beam widths 100 and 500, with and without the scorer, both decoders
run over every matrix of the group; the best of --repeats runs is printed, as seconds per second of audio
(20 ms a frame), with Coqui's over ours. Coqui's runs in its own Python 3.10 process (coqui_stt_ctcdecoder
1.4.0, tests/native_client); each process is pinned to the same single CPU, and ours gets a fresh scorer for
every run, so that neither carries word scores over from an earlier one. The transcripts are compared too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from coqui_stt_training.decoding.beam_search import DecodeOptions, candidates  # noqa: E402
from coqui_stt_training.decoding.scorer import Scorer  # noqa: E402
from coqui_stt_training.model.alphabet import UTF8Alphabet, load_alphabet  # noqa: E402
from tests import native_client  # noqa: E402

SMOKE = os.path.join(ROOT, "data", "smoke_test")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "decoder_parity")
FRAME_SECONDS = 0.02


def groups(path: str, work: str) -> list[tuple[str, str | None, str, list[np.ndarray]]]:
    """(name, alphabet file or None for bytes, scorer, matrices) for each group of the file."""
    with np.load(path) as data:
        found = json.loads(str(data["groups"]))
        matrices = {g: [data[f"{g}_{i}"] for i in range(v["count"])] for g, v in found.items()}
    russian = os.path.join(work, "ru-alphabet.txt")
    with open(russian, "w", encoding="utf-8") as f:
        f.write(found["asterisk_ru"]["alphabet"])
    english = os.path.join(ROOT, "data", "alphabet.txt")
    return [
        ("English (LDC93S1, asterisk)", english, os.path.join(SMOKE, "pruned_lm.scorer"),
         matrices["ldc"] + matrices["asterisk_en"]),
        ("Russian transfer (asterisk)", russian, os.path.join(FIXTURES, "asterisk-ru.scorer"), matrices["asterisk_ru"]),
        ("bytes (LDC93S1)", None, os.path.join(SMOKE, "pruned_lm.bytes.scorer"), matrices["bytes"]),
    ]  # fmt: skip


def ours(matrices, alphabet_path, scorer_path, beam, repeats) -> tuple[float, list[tuple[int, ...]]]:
    alphabet = load_alphabet(alphabet_path) if alphabet_path else UTF8Alphabet()
    fastest, best = float("inf"), []
    for _ in range(repeats):
        scorer = Scorer(scorer_path, alphabet, 0.931289039105002, 1.1834137581510284) if scorer_path else None
        started = time.perf_counter()
        best = [candidates(m, DecodeOptions(beam, 1.0, 300), scorer, 1)[0].labels for m in matrices]
        fastest = min(fastest, time.perf_counter() - started)
    return fastest, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--matrices", default=os.path.join(FIXTURES, "matrices.npz"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=min(os.sched_getaffinity(0)), help="the one CPU both run on")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})  # inherited by Coqui's process
    work = os.path.join(ROOT, "runs", "decode-benchmark")
    os.makedirs(work, exist_ok=True)
    # compile our search first (numba caches it on disk; the first run of a fresh checkout compiles)
    candidates(np.full((4, 29), 1 / 29, np.float32), DecodeOptions(8), None, 1)
    print(f"one CPU ({args.cpu}); seconds of decoding per second of audio, the best of {args.repeats} runs")
    print(f"{'matrices':32} {'beam':>4} {'scorer':>6} {'ours':>8} {'Coqui':>8} {'Coqui/ours':>10}  same transcripts")
    for name, alphabet, scorer, matrices in groups(args.matrices, work):
        audio = sum(len(m) for m in matrices) * FRAME_SECONDS
        for beam in (100, 500):
            for with_scorer in (False, True):
                used = scorer if with_scorer else None
                spec = {"matrices": list(range(len(matrices))), "alphabet": alphabet, "scorer": used,
                        "alpha": 0.931289039105002, "beta": 1.1834137581510284, "beam_width": beam, "cutoff_prob": 1.0,
                        "cutoff_top_n": 300, "hot_words": {}, "num_results": 1, "repeats": args.repeats}  # fmt: skip
                coqui = native_client.coqui_decode([spec], matrices)
                theirs = [tuple(c[0][1]) for c in coqui["candidates"][0]]
                mine, found = ours(matrices, alphabet, used, beam, args.repeats)
                seconds = coqui["seconds"][0]
                same = sum(a == b for a, b in zip(theirs, found))
                print(f"{name:32} {beam:4d} {'yes' if used else 'no':>6} {mine / audio:8.4f} {seconds / audio:8.4f} "
                      f"{seconds / mine:10.2f}  {same}/{len(matrices)}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
