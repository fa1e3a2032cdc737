"""The CTC loss, in memory that grows linearly with the utterance.

CTC's forward-backward fills two tables of [frames, 2 x labels + 1]: torch's CPU kernel keeps both whole,
so its memory grows with the square of an utterance's length (a 10-minute recording with 9000 labels
needs 4.3 GB for them, against 0.4 GB for the whole network at n_hidden 100, and takes a minute).
Utterances past SEGMENTED_ABOVE table entries go through segmented_ctc instead: the forward pass keeps
the forward variables only at the start of each segment of sqrt(frames / 2) frames, and the backward pass
recomputes one segment at a time, so that only two segments' tables exist at once. It works in rescaled probabilities
in float64 (Graves' formulation), which is exact to rounding, and gives the same loss and gradients as
torch's kernel (a test compares both).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

SEGMENTED_ABOVE = 1 << 22  # table entries (frames x (2 labels + 1)) above which an utterance is segmented


def ctc_loss(logits: torch.Tensor, feature_lengths, labels, label_lengths) -> torch.Tensor:
    """Per-sample CTC negative log-likelihood (a sum over the utterance, not normalised), blank last, for
    logits [T, B, C] and labels concatenated. Computed in float32 whatever the logits' dtype; long
    utterances in linear memory."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    blank = logits.shape[-1] - 1
    frames = [int(n) for n in feature_lengths]
    counts = [int(n) for n in label_lengths]
    long = [i for i, (t, n) in enumerate(zip(frames, counts)) if t * (2 * n + 1) > SEGMENTED_ABOVE]
    if not long:
        return _torch_ctc(log_probs, labels, feature_lengths, label_lengths, blank)
    starts = [0, *itertools.accumulate(counts)]
    losses: list[torch.Tensor | None] = [None] * len(frames)
    for i in long:
        target = labels[starts[i] : starts[i + 1]]
        losses[i] = segmented_ctc(log_probs[: frames[i], i], target, blank)
    short = sorted(set(range(len(frames))) - set(long))
    if short:
        pieces = torch.cat([labels[starts[i] : starts[i + 1]] for i in short])
        values = _torch_ctc(
            log_probs[:, short], pieces, torch.tensor([frames[i] for i in short]),
            torch.tensor([counts[i] for i in short]), blank,
        )  # fmt: skip
        for i, value in zip(short, values):
            losses[i] = value
    return torch.stack([loss for loss in losses if loss is not None])


def _torch_ctc(log_probs, labels, feature_lengths, label_lengths, blank: int) -> torch.Tensor:
    return F.ctc_loss(
        log_probs, labels, feature_lengths, label_lengths, blank=blank, reduction="none", zero_infinity=False
    )


def ctc_bytes(frames: int, labels: int, classes: int) -> int:
    """The memory CTC needs for one utterance, beyond the logits: torch's two float32 tables and its
    gradient, or the segmented form's two float64 segment tables, its segment starts, and its float64
    probabilities and gradient."""
    states = 2 * labels + 1
    if frames * states <= SEGMENTED_ABOVE:
        return 4 * (2 * frames * states + frames * classes)
    segment = segment_frames(frames)
    return 8 * (2 * segment * states + -(-frames // segment) * states + 2 * frames * classes)


def segment_frames(frames: int) -> int:
    """Frames per segment: the two segment tables and the segment starts then take the same room, the
    least in all (for 10 minutes with 9000 labels, 66 MiB where torch's kernel takes 4.3 GB)."""
    return max(1, math.isqrt(frames // 2))


def segmented_ctc(log_probs: torch.Tensor, target: torch.Tensor, blank: int) -> torch.Tensor:
    """CTC negative log-likelihood of one utterance: log_probs [T, C] (log-softmax outputs), target [L]."""
    return _SegmentedCTC.apply(log_probs, target, blank)


class _SegmentedCTC(torch.autograd.Function):
    @staticmethod
    def forward(ctx, log_probs: torch.Tensor, target: torch.Tensor, blank: int) -> torch.Tensor:
        probs = log_probs.detach().double().exp()
        ext, skip = _extended(target.to(log_probs.device), blank)
        frames = probs.shape[0]
        segment = segment_frames(frames)
        alpha = torch.zeros(len(ext), dtype=torch.float64, device=probs.device)
        alpha[0] = probs[0, blank]
        if len(ext) > 1:
            alpha[1] = probs[0, ext[1]]
        log_likelihood, starts = 0.0, []
        for t in range(frames):
            if t:
                alpha = _forward_step(alpha, probs[t, ext], skip)
            if len(ext) > 1:
                alpha[: max(0, len(ext) - 2 * (frames - t))] = 0.0  # states that can no longer reach the end
            scale = float(alpha.sum())
            if scale == 0.0:  # no alignment fits (too few frames): torch says inf too
                ctx.infeasible = True
                return log_probs.new_tensor(math.inf)
            alpha = alpha / scale
            log_likelihood += math.log(scale)
            if t % segment == 0:
                starts.append(alpha)
        ctx.infeasible = False
        ctx.save_for_backward(probs, ext, skip)
        ctx.starts, ctx.segment, ctx.dtype = starts, segment, log_probs.dtype
        return log_probs.new_tensor(-log_likelihood)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        if ctx.infeasible:
            return None, None, None
        probs, ext, skip = ctx.saved_tensors
        frames, n = probs.shape[0], len(ext)
        grad = torch.zeros_like(probs)
        beta_after: torch.Tensor | None = None  # beta at the first frame of the segment after this one
        for k in reversed(range(len(ctx.starts))):
            t0 = k * ctx.segment
            t1 = min(frames, t0 + ctx.segment)
            alphas = torch.empty(t1 - t0, n, dtype=torch.float64, device=probs.device)
            alphas[0] = ctx.starts[k]
            for t in range(t0 + 1, t1):
                a = _forward_step(alphas[t - t0 - 1], probs[t, ext], skip)
                alphas[t - t0] = a / a.sum()
            betas = torch.empty_like(alphas)
            if beta_after is None:  # the utterance's last frame: the path ends on the last label or blank
                b = torch.zeros(n, dtype=torch.float64, device=probs.device)
                b[-2:] = 1.0
            else:
                b = _backward_step(beta_after, probs[t1, ext], skip)
            betas[-1] = b / b.sum()
            for t in range(t1 - 2, t0 - 1, -1):
                b = _backward_step(betas[t - t0 + 1], probs[t + 1, ext], skip)
                betas[t - t0] = b / b.sum()
            beta_after = betas[0]
            # Occupation of each state at each frame: the paths through it, as a share of all paths (in
            # place: two tables of a segment are all that exist at once).
            occupation = alphas.mul_(betas)
            occupation /= occupation.sum(dim=1, keepdim=True)
            del betas
            grad[t0:t1].index_add_(1, ext, occupation, alpha=-1.0)
        return (grad * grad_output.double()).to(ctx.dtype), None, None


def _extended(target: torch.Tensor, blank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The target with blanks around every label, and which states may be reached skipping the blank
    before them (a label unlike the one two states back)."""
    ext = torch.full((2 * len(target) + 1,), blank, dtype=torch.long, device=target.device)
    ext[1::2] = target
    skip = torch.zeros(len(ext), dtype=torch.float64, device=target.device)
    if len(ext) > 2:
        skip[2:] = ((ext[2:] != blank) & (ext[2:] != ext[:-2])).double()
    return ext, skip


def _forward_step(alpha: torch.Tensor, emit: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    new = alpha.clone()
    new[1:] += alpha[:-1]
    new[2:] += alpha[:-2] * skip[2:]
    return new * emit


def _backward_step(beta_next: torch.Tensor, emit_next: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """beta without the current frame's emission: the continuations from each state."""
    q = beta_next * emit_next
    new = q.clone()
    new[:-1] += q[1:]
    new[:-2] += q[2:] * skip[2:]
    return new
