"""Run Coqui's own CTC decoder (the `coqui_stt_ctcdecoder` 1.4.0 package, in the Python 3.10 environment beside
the native client) on probability matrices, as its training tools and libstt call it.

    python run_decoder.py JOBS.json MATRICES.npz OUT.json

MATRICES.npz holds `probs_<i>` [frames, classes] (float32). JOBS.json is a list of jobs, each
{"matrices": [i, ...], "alphabet": path or null (null: bytes mode), "scorer": path or null, "alpha", "beta",
"beam_width", "cutoff_prob", "cutoff_top_n", "hot_words": {word: boost}, "num_results", "repeats"}. OUT.json
gets {"candidates": per job and matrix, the candidates as [confidence, tokens, timesteps]; "seconds": per job,
the fastest of its `repeats` runs over all its matrices (the decoding alone, one thread)}. Python 3.10 and
numpy only: this runs beside our package, not inside it.
"""

import json
import sys
import time

import coqui_stt_ctcdecoder as decoder
import numpy as np


def main() -> None:
    jobs_path, matrices_path, out_path = sys.argv[1:4]
    with open(jobs_path, encoding="utf-8") as f:
        jobs = json.load(f)
    matrices = np.load(matrices_path)
    outcomes, seconds = [], []
    for job in jobs:
        alphabet = decoder.Alphabet(job["alphabet"]) if job["alphabet"] else decoder.UTF8Alphabet()
        scorer = None
        if job["scorer"]:
            scorer = decoder.Scorer(job["alpha"], job["beta"], job["scorer"], alphabet)
        hot_words = {word.encode("utf-8"): boost for word, boost in job["hot_words"].items()}
        probs = [matrices[f"probs_{i}"].astype(np.float64) for i in job["matrices"]]
        settings, results = (job["beam_width"], job["cutoff_prob"], job["cutoff_top_n"]), job["num_results"]
        fastest = float("inf")
        for _ in range(job.get("repeats", 1)):
            started = time.perf_counter()
            # the wrapper of this call decodes tokens to text, which fails on bytes that are no UTF-8: the
            # SWIG call returns the tokens as they are
            found = [decoder.swigwrapper.ctc_beam_search_decoder(p, alphabet, *settings, scorer, hot_words, results)
                     for p in probs]  # fmt: skip
            fastest = min(fastest, time.perf_counter() - started)
        seconds.append(fastest)
        outcomes.append(
            [[[c.confidence, list(map(int, c.tokens)), list(map(int, c.timesteps))] for c in f] for f in found]
        )
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"candidates": outcomes, "seconds": seconds}, f)


if __name__ == "__main__":
    main()
