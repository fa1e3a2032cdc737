"""An app written for Coqui STT 1.4.0's Python package (`pip install stt`, Python 3.10 at most): it transcribes a
WAV file as a microphone would deliver it, 20-320 ms at a time, printing the intermediate transcript as it
changes, then the final one with each word's start time.

    python stt_app.py MODEL.tflite SCORER AUDIO.wav [hot_word:boost ...]

To run it on Python 3.11 and later, change only the import below to
`from coqui_stt_training.client import Model`.
"""

import random
import sys
import wave

import numpy as np
from stt import Model


def main():
    model_path, scorer_path, audio_path = sys.argv[1:4]
    model = Model(model_path)
    model.enableExternalScorer(scorer_path)
    for pair in sys.argv[4:]:
        word, boost = pair.split(":")
        model.addHotWord(word, float(boost))
    with wave.open(audio_path) as wav:
        if wav.getframerate() != model.sampleRate():
            sys.exit(f"{audio_path}: {wav.getframerate()} Hz; the model takes {model.sampleRate()} Hz")
        audio = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)

    stream = model.createStream()
    chunks = random.Random(0)  # the same chunk sizes every run
    shown, start = "", 0
    while start < len(audio):
        size = model.sampleRate() * chunks.choice([20, 60, 100, 320]) // 1000
        stream.feedAudioContent(audio[start : start + size])
        start += size
        text = stream.intermediateDecode()
        if text != shown:
            print(f"... {text}")
            shown = text
    metadata = stream.finishStreamWithMetadata(1)
    best = metadata.transcripts[0]
    print("".join(token.text for token in best.tokens))
    word, begin = "", 0.0
    for token in best.tokens + [None]:
        if token is None or token.text == " ":
            if word:
                print(f"{begin:6.2f} s  {word}")
            word = ""
        else:
            if not word:
                begin = token.start_time
            word += token.text


if __name__ == "__main__":
    main()
