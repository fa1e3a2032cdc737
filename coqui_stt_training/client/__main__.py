"""Coqui's `stt` command (native_client/python/client.py of stt 1.4.0), on this package's client:

    python -m coqui_stt_training.client --model model.tflite [--scorer kenlm.scorer] --audio speech.wav \
        [--beam_width N] [--lm_alpha A --lm_beta B] [--json] [--candidate_transcripts N] \
        [--hot_words word:boost,...] [--stream N]

Prints the transcript, or with --json the candidates as Coqui's client prints them (words with their start
time and duration); --stream N feeds the audio N samples at a time, as a microphone would.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from ..data.audio import load_audio
from ..system.errors import UserError
from . import CandidateTranscript, Metadata, Model


def words(transcript: CandidateTranscript) -> list[dict]:
    """Coqui's words_from_candidate_transcript: a word ends at each space and at the last token (an empty one
    too, after two spaces), with its first token's start time and the time to the token that ends it."""
    out, word, start = [], "", 0.0
    for i, token in enumerate(transcript.tokens):
        if token.text != " ":
            if not word:
                start = token.start_time
            word += token.text
        if token.text == " " or i == len(transcript.tokens) - 1:
            duration = max(token.start_time - start, 0)
            out.append({"word": word, "start_time": round(start, 4), "duration": round(duration, 4)})
            word, start = "", 0.0
    return out


def metadata_json(metadata: Metadata) -> str:
    transcripts = [{"confidence": t.confidence, "words": words(t)} for t in metadata.transcripts]
    return json.dumps({"transcripts": transcripts}, indent=2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m coqui_stt_training.client", description="Running Coqui STT inference."
    )
    parser.add_argument("--model", required=True, help="Path to the model (Coqui's .tflite or .pb export)")
    parser.add_argument("--scorer", help="Path to the external scorer file")
    parser.add_argument("--audio", required=True, help="Path to the audio file to run (WAV, FLAC, Ogg, MP3)")
    parser.add_argument("--beam_width", type=int, help="Beam width for the CTC decoder")
    parser.add_argument("--lm_alpha", type=float, help="Language model weight (default: the scorer package's)")
    parser.add_argument("--lm_beta", type=float, help="Word insertion bonus (default: the scorer package's)")
    parser.add_argument("--extended", action="store_true", help="Output string from extended metadata")
    parser.add_argument("--json", action="store_true", help="Output json from metadata with timestamp of each word")
    parser.add_argument("--candidate_transcripts", type=int, default=3, help="Number of candidate transcripts in JSON")
    parser.add_argument("--hot_words", type=str, help="Hot-words and their boosts, as word:boost,word:boost")
    parser.add_argument("--stream", type=int, default=0, help="Feed the audio this many samples at a time")
    args = parser.parse_args(argv)
    try:
        print(f"Loading model from file {args.model}", file=sys.stderr)
        started = time.perf_counter()
        model = Model(args.model)
        print(f"Loaded model in {time.perf_counter() - started:.3}s.", file=sys.stderr)
        if args.beam_width:
            model.setBeamWidth(args.beam_width)
        if args.scorer:
            print(f"Loading scorer from files {args.scorer}", file=sys.stderr)
            started = time.perf_counter()
            model.enableExternalScorer(args.scorer)
            print(f"Loaded scorer in {time.perf_counter() - started:.3}s.", file=sys.stderr)
            if args.lm_alpha and args.lm_beta:  # (Coqui's test: a weight of 0 keeps the package's)
                model.setScorerAlphaBeta(args.lm_alpha, args.lm_beta)
        if args.hot_words:
            print("Adding hot-words", file=sys.stderr)
            for pair in args.hot_words.split(","):
                word, colon, boost = pair.rpartition(":")
                if not colon:
                    raise UserError(f"--hot_words {args.hot_words!r}: {pair!r} is not word:boost")
                model.addHotWord(word, float(boost))
        samples = load_audio(args.audio, model.sampleRate())  # any rate, resampled
        audio = np.round(np.clip(samples, -1.0, 32767 / 32768) * 32768).astype(np.int16)
        print("Running inference.", file=sys.stderr)
        started = time.perf_counter()
        stream = model.createStream()
        step = args.stream or max(len(audio), 1)
        for start in range(0, len(audio), step):
            stream.feedAudioContent(audio[start : start + step])
        if args.extended:
            print("".join(token.text for token in stream.finishStreamWithMetadata(1).transcripts[0].tokens))
        elif args.json:
            print(metadata_json(stream.finishStreamWithMetadata(args.candidate_transcripts)))
        else:
            print(stream.finishStream())
        took, seconds = time.perf_counter() - started, len(audio) / model.sampleRate()
        print(f"Inference took {took:0.3f}s for {seconds:0.3f}s audio file.", file=sys.stderr)
    except (UserError, RuntimeError, ValueError) as e:
        sys.exit(f"E {e}")


if __name__ == "__main__":
    main()
