"""CTC: the segmented form that long utterances take gives torch's loss and gradients, in linear memory."""

import math

import pytest
import torch
import torch.nn.functional as F

from coqui_stt_training.model import loss
from coqui_stt_training.model.loss import ctc_bytes, ctc_loss, segmented_ctc


def torch_ctc(logits, target):
    """torch's own kernel in float64: the reference both are held to."""
    log_probs = logits.double().log_softmax(-1)[:, None]
    frames, blank = torch.tensor([len(logits)]), logits.shape[-1] - 1
    return F.ctc_loss(log_probs, target, frames, torch.tensor([len(target)]), blank=blank, reduction="none")[0]


@pytest.mark.parametrize(
    "frames, labels, classes", [(12, 6, 3), (50, 10, 6), (30, 14, 5), (200, 60, 29), (800, 250, 29)]
)
def test_segmented_ctc_gives_torchs_loss_and_gradient(frames, labels, classes):
    generator = torch.Generator().manual_seed(frames)
    logits = torch.randn(frames, classes, generator=generator, dtype=torch.float64)
    target = torch.randint(0, classes - 1, (labels,), generator=generator)
    target[3] = target[2]  # a repeated label needs a blank between: the skip rule is exercised
    reference = logits.clone().requires_grad_()
    expected = torch_ctc(reference, target)
    (expected_grad,) = torch.autograd.grad(expected, reference)
    ours = logits.float().requires_grad_()
    value = segmented_ctc(ours.log_softmax(-1), target, classes - 1)
    (grad,) = torch.autograd.grad(value, ours)
    assert loss.segment_frames(frames) < frames  # several segments
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert float((grad.double() - expected_grad).abs().max()) < 1e-5


def test_an_alignment_that_cannot_fit_is_an_infinite_loss_as_torchs():
    logits = torch.randn(5, 4)
    target = torch.tensor([1, 1, 1, 2])  # needs 6 frames
    assert math.isinf(float(torch_ctc(logits, target)))
    assert math.isinf(float(segmented_ctc(logits.log_softmax(-1), target, 3)))


def test_a_batch_of_short_and_long_utterances_gives_each_its_own_loss(monkeypatch):
    monkeypatch.setattr(loss, "SEGMENTED_ABOVE", 2000)  # the 100-frame utterance goes the segmented way
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(100, 3, 8, generator=generator)
    lengths, counts = torch.tensor([100, 40, 70]), torch.tensor([30, 5, 12])
    labels = torch.randint(0, 7, (int(counts.sum()),), generator=generator)
    values = ctc_loss(logits, lengths, labels, counts)
    starts = [0, 30, 35, 47]
    for i in range(3):
        target = labels[starts[i] : starts[i + 1]]
        assert float(values[i]) == pytest.approx(float(torch_ctc(logits[: lengths[i], i], target)), rel=1e-5)


def test_the_segmented_form_needs_memory_linear_in_the_frames_not_their_square():
    classes = 29
    ten_minutes, two_minutes = ctc_bytes(30000, 9000, classes), ctc_bytes(6000, 1800, classes)
    torch_kernel = 4 * 2 * 30000 * (2 * 9000 + 1)
    assert ten_minutes < torch_kernel / 40  # 66 MiB against 4.3 GB
    assert ten_minutes / two_minutes < 12  # five times the audio: about 11 times the memory, not 25
