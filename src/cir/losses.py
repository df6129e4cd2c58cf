"""Pure loss functions. Activations come already restricted to the kept tokens: shape (tokens, d).

Each function states the formula it implements and the section of method.md it comes from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def mlp_breaking(
    outputs: Sequence[torch.Tensor], originals: Sequence[torch.Tensor], norms: Sequence[torch.Tensor]
) -> torch.Tensor:
    """MLP breaking (§3): mean over layers l of mean_t max(0, <o_lt, o0_lt> / n_l²).

    Drives each forget layer's MLP output on forget tokens to be orthogonal to what it was.

    Args:
        outputs: current MLP outputs o_l, one (tokens, d) tensor per forget layer.
        originals: the original model's MLP outputs o0_l on the same tokens.
        norms: n_l = mean_t ||o0_lt||, one scalar tensor per layer.
    """
    per_layer = [
        F.relu((o.float() * o0.float()).sum(dim=-1) / n**2).mean()  # (tokens,) -> ()
        for o, o0, n in zip(outputs, originals, norms, strict=True)
    ]
    return mean_on_first_device(per_layer)


def mean_on_first_device(values: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean of scalar tensors that may sit on different devices (layers split by a device_map)."""
    device = values[0].device
    return torch.stack([v.to(device) for v in values]).mean()


def residual_distance(hidden: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Retain loss (§2): mean_t ||h_t - h0_t|| / mean_t ||h0_t|| on the residual stream, (tokens, d)."""
    hidden, original = hidden.float(), original.float()
    return (hidden - original).norm(dim=-1).mean() / original.norm(dim=-1).mean()


def rerouting(hidden: Sequence[torch.Tensor], originals: Sequence[torch.Tensor]) -> torch.Tensor:
    """Circuit Breakers' rerouting (§6): mean over layers of mean_t max(0, cos(h_lt, h0_lt))."""
    per_layer = [
        F.relu(F.cosine_similarity(h.float(), h0.float(), dim=-1)).mean()
        for h, h0 in zip(hidden, originals, strict=True)
    ]
    return mean_on_first_device(per_layer)


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Log p(token_{t+1} | ..t) for every position, (batch, seq - 1), in fp32."""
    logprobs = logits[:, :-1].float().log_softmax(dim=-1)  # (batch, seq-1, vocab)
    return logprobs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def target_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Float mask (batch, seq - 1) of the next-token targets that count.

    A target counts when it and the token predicting it are both real, so a left-padded row never
    scores a pad -> BOS prediction.
    """
    return (attention_mask[:, 1:] * attention_mask[:, :-1]).float()


def cross_entropy(
    logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Mean next-token cross-entropy over the real target tokens (padding excluded)."""
    weights = target_mask(attention_mask)
    return -(token_logprobs(logits, input_ids) * weights).sum() / weights.sum()


def sequence_logprob(
    logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Sum of log p over each sequence's real target tokens, (batch,)."""
    return (token_logprobs(logits, input_ids) * target_mask(attention_mask)).sum(dim=-1)


def npo(logprob: torch.Tensor, reference_logprob: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO (Zhang et al. 2024): -(2/β) mean log σ(-β (log π(y) - log π_ref(y))) over forget sequences."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (logprob - reference_logprob)).mean()


def simnpo(logprob: torch.Tensor, lengths: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimNPO (Fan et al. 2024): -(2/β) mean log σ(-(β/|y|) log π(y) - γ), reference-free."""
    return -(2.0 / beta) * F.logsigmoid(-beta * logprob / lengths - gamma).mean()


def mean_squared(hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """RMU's distance (§6): mean over tokens and features of (h - target)², target broadcastable to h."""
    return (hidden.float() - target.float()).pow(2).mean()
