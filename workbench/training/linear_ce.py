"""Cross-entropy of a linear output layer, computed in chunks of positions: the language-model loss without the
[batch, sequence, vocabulary] logits tensor.

Plain `model(..., labels=...)` materialises every position's logits (Gemma 3: 262,144 per token, 1 MiB in fp32),
then a log-softmax of the same size, then its gradient: three such tensors at the peak. Here the hidden states of
the positions that carry a label are multiplied by the output matrix `chunk` rows at a time, and each chunk's
gradient with respect to the hidden states (and the matrix, when it trains) is computed right there, in the
forward pass, as fused linear cross-entropy kernels do. The backward pass only scales what was kept. Peak memory
is one chunk's logits, whatever the batch; the matrix products are the same three as the plain loss's.
"""

from __future__ import annotations

import torch

# Logits per chunk: 256 MiB of fp32, 256 rows at Gemma's 262k vocabulary (1 MiB a row); small vocabularies get more
# rows. Each chunk streams the whole output matrix through two products, so small chunks are slow: for 475 positions
# at 262k on the CPU, 64-row chunks took 6.95 s a step of the loss, 256-row ones 5.13 s, the plain loss 5.65 s.
CHUNK_ELEMENTS = 2**26
IGNORE = -100  # the label of positions without a loss (prompt tokens, padding), as Hugging Face losses use it


def chunk_rows(vocab_size: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, vocab_size))


def _logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            softcap: float | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """fp32 logits of a chunk, and (with soft-capping, Gemma 2's) tanh of the uncapped ones for the gradient."""
    z = (hidden @ weight.T if bias is None else torch.addmm(bias, hidden, weight.T)).float()
    if not softcap:
        return z, None
    t = torch.tanh(z / softcap)
    return t * softcap, t


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, softcap, rows):  # noqa: D401  (autograd's signature)
        n = targets.numel()
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = bias is not None and ctx.needs_input_grad[2]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, n, rows):
            h, t = hidden[start:start + rows], targets[start:start + rows]
            z, tanh = _logits(h, weight, bias, softcap)
            picked = z.gather(1, t[:, None]).squeeze(1)
            # The softmax is built in the logits' own buffer: one [rows, V] tensor per chunk, read and written in
            # place (a log-softmax and its gradient would each take another).
            top = z.amax(-1, keepdim=True)
            e = z.sub_(top).exp_()
            norm = e.sum(-1, keepdim=True)
            total += (top.squeeze(1) + norm.squeeze(1).log() - picked).sum()
            if not (need_h or need_w or need_b):
                continue
            # d(mean loss)/d(logits) = (softmax - one-hot) / n, through the cap's tanh when there is one
            g = e.div_(norm)
            g[torch.arange(len(t), device=g.device), t] -= 1.0
            g.div_(n)
            if tanh is not None:
                g *= 1.0 - tanh * tanh
            if need_h:
                grad_h[start:start + rows] = g.to(weight.dtype) @ weight
            if need_w:
                grad_w.addmm_(g.T, h.float())
            if need_b:
                grad_b += g.sum(0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        return total / n

    @staticmethod
    def backward(ctx, grad_out):
        # The gradients were computed in the forward pass for a loss of weight 1: scale them by the weight the loss
        # got (gradient accumulation, a mixed loss) and give each the dtype of its input.
        grads = [None if g is None else (g * grad_out).to(dtype) for g, dtype in zip(ctx.saved_tensors, ctx.dtypes)]
        return *grads, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         bias: torch.Tensor | None = None, softcap: float | None = None,
                         rows: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of `hidden @ weight.T (+ bias)` ([N, H] x [V, H]) against `targets` [N], in chunks of
    `rows` positions (default: `chunk_rows(V)`). `softcap`: logits = softcap * tanh(logits / softcap), as Gemma 2
    caps them. Equal to `F.cross_entropy(full logits, targets)` up to float rounding."""
    if targets.numel() == 0:
        raise ValueError("no labelled positions: nothing to compute a loss on")
    if hidden.shape[0] != targets.shape[0]:
        raise ValueError(f"{hidden.shape[0]} hidden rows for {targets.shape[0]} targets")
    return _LinearCrossEntropy.apply(hidden, weight, bias, targets, softcap, rows or chunk_rows(weight.shape[0]))


@torch.no_grad()
def token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                   bias: torch.Tensor | None = None, softcap: float | None = None,
                   rows: int | None = None) -> torch.Tensor:
    """log p(target) at each of the N positions [N], in chunks as above (rank classification's scores)."""
    rows = rows or chunk_rows(weight.shape[0])
    out = torch.empty(targets.shape[0], dtype=torch.float32, device=hidden.device)
    for start in range(0, targets.shape[0], rows):
        z, _ = _logits(hidden[start:start + rows], weight, bias, softcap)
        t = targets[start:start + rows]
        out[start:start + rows] = z.gather(1, t[:, None]).squeeze(1) - torch.logsumexp(z, -1)
    return out
