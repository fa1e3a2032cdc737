"""Coqui's native client's Python API (`stt` 1.4.0, in its own Python 3.10 environment) on one job, its results
as JSON, for tests/test_client.py to compare with coqui_stt_training.client.

    python run_api.py JOB.json OUT.json

JOB: {"model", "scorer" ("": none), "alpha_beta" (null or [alpha, beta]), "hot_words" {word: boost},
"beam_width" (0: the model's), "wavs", "chunk" (samples per feed), "num_results"}. OUT, per WAV: "stt", "metadata"
(sttWithMetadata: per candidate its confidence and tokens as [text, timestep, start_time]), "intermediate"
(intermediateDecode after every feed of `chunk` samples), "finish" (finishStream) and "flushed"
(intermediateDecodeFlushBuffers after every feed of 3 * `chunk` samples, then finishStream, on another
stream). Python 3.10, numpy only.
"""

import json
import sys
import wave

import numpy as np
import stt


def read_wav(path):
    with wave.open(path) as f:
        return np.frombuffer(f.readframes(f.getnframes()), np.int16)


def metadata(result):
    return [
        {"confidence": c.confidence, "tokens": [[t.text, t.timestep, t.start_time] for t in c.tokens]}
        for c in result.transcripts
    ]


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        job = json.load(f)
    model = stt.Model(job["model"])
    if job["beam_width"]:
        model.setBeamWidth(job["beam_width"])
    if job["scorer"]:
        model.enableExternalScorer(job["scorer"])
        if job["alpha_beta"]:
            model.setScorerAlphaBeta(*job["alpha_beta"])
        for word, boost in job["hot_words"].items():
            model.addHotWord(word, boost)
    out = []
    for path in job["wavs"]:
        audio = read_wav(path)
        stream = model.createStream()
        intermediate = []
        for start in range(0, len(audio), job["chunk"]):
            stream.feedAudioContent(audio[start : start + job["chunk"]])
            intermediate.append(stream.intermediateDecode())
        flushing, flushed = model.createStream(), []
        for start in range(0, len(audio), 3 * job["chunk"]):
            flushing.feedAudioContent(audio[start : start + 3 * job["chunk"]])
            # (stt 1.4.0's method calls a misspelt binding and raises AttributeError; its C function works)
            flushed.append(stt.impl.IntermediateDecodeFlushBuffers(flushing._impl))
        flushed.append(flushing.finishStream())
        out.append(
            {
                "flushed": flushed,
                "stt": model.stt(audio),
                "metadata": metadata(model.sttWithMetadata(audio, job["num_results"])),
                "intermediate": intermediate,
                "finish": stream.finishStream(),
            }
        )
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
