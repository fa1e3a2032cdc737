"""Coqui's test report: per-sample WER and CER, the set's totals (each capped at 1), and the order of the
best, median and worst samples."""

import pytest

from coqui_stt_training.data.samples import Sample
from coqui_stt_training.decoding.evaluation import SampleResult, levenshtein, print_report, report_order, score, totals


def sample(transcript: str, name: str = "a.wav") -> Sample:
    return Sample(audio_path=name, wav_filename=name, transcript=transcript, filesize=0, where="test.csv, row 2")


def result(name: str, wer: float, cer: float, loss: float) -> SampleResult:
    """A sample of 10 words and 20 characters with these error rates."""
    return SampleResult(name, "src", "res", loss, round(cer * 20), 20, round(wer * 10), 10, cer, wer)


@pytest.mark.parametrize(
    "a, b, distance",
    [("", "", 0), ("abc", "", 3), ("", "ab", 2), ("kitten", "sitting", 3), ("flaw", "lawn", 2), ("same", "same", 0)],
)
def test_levenshtein_distances(a, b, distance):
    assert levenshtein(a, b) == distance
    assert levenshtein(list(a), list(b)) == distance  # any sequences: words as well as characters


def test_a_samples_word_and_character_error_rates():
    r = score(sample("she had your dark suit"), "she had you dark suit", loss=12.5)
    assert r.word_distance == 1
    assert r.word_length == 5
    assert r.wer == pytest.approx(0.2)
    assert r.char_distance == 1
    assert r.char_length == 22
    assert r.cer == pytest.approx(1 / 22)
    assert r.loss == 12.5
    assert (r.wav_filename, r.src, r.res) == ("a.wav", "she had your dark suit", "she had you dark suit")


def test_a_set_is_scored_over_all_its_words_not_as_a_mean_of_rates():
    results = [score(sample("a b c d"), "a b c x", 1.0), score(sample("e"), "", 3.0)]
    wer, cer, loss = totals(results)
    assert wer == pytest.approx((1 + 1) / (4 + 1))  # the mean of the two rates would be 0.625
    assert cer == pytest.approx((1 + 1) / (7 + 1))
    assert loss == pytest.approx(2.0)


def test_set_rates_are_capped_at_one_as_coqui_does():
    wer, cer, _ = totals([score(sample("a"), "x y z w", 0.0)])
    assert wer == 1.0  # four word errors for one word
    assert cer == 1.0
    assert totals([]) == (0.0, 0.0, 0.0)


def test_report_order_is_best_wer_first_then_the_higher_loss():
    results = [result("worst", 1.0, 0.1, 5.0), result("tie-low", 0.5, 0.9, 1.0), result("tie-high", 0.5, 0.2, 9.0),
               result("best", 0.0, 0.5, 2.0)]  # fmt: skip
    assert [r.wav_filename for r in report_order(results, bytes_mode=False)] == ["best", "tie-high", "tie-low", "worst"]
    # a bytes model is reported by CER
    assert [r.wav_filename for r in report_order(results, bytes_mode=True)] == ["worst", "tie-high", "best", "tie-low"]


def test_the_report_shows_best_median_and_worst_samples(capsys):
    results = [result(f"{i}.wav", i / 10, i / 20, float(i)) for i in range(9)]
    print_report("test.csv", results, report_count=2, bytes_mode=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Test on test.csv - WER: 0.400000, CER: 0.200000, loss: 4.000000"
    titles = [i for i, line in enumerate(lines) if line in ("Best WER:", "Median WER:", "Worst WER:")]
    wavs = [line.removeprefix(" - wav: ") for line in lines if line.startswith(" - wav: ")]
    assert [lines[i] for i in titles] == ["Best WER:", "Median WER:", "Worst WER:"]
    assert wavs == ["0.wav", "1.wav", "3.wav", "4.wav", "7.wav", "8.wav"]
    assert "WER: 0.800000, CER: 0.400000, loss: 8.000000" in lines
