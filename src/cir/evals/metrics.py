"""Scoring primitives, answer probability, recall loss, general (held-out text) loss and KL to the original.

Every function here runs under `torch.no_grad()` on the device of the model's parameters, restores
each module's train/eval mode afterwards, and gives the same numbers whichever side a batch is padded
on: the attention mask hides padding and the position ids count from each row's first real token.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cir.data.batches import Batch, encode, pad, pad_id
from cir.data.facts import Fact
from cir.errors import ConfigError, DataError

PaddingSide = Literal["right", "left"]
PADDING_SIDES = ("right", "left")
# Prompts are never truncated: cutting one would drop its "Answer:" cue. A prompt longer than the
# model's context fails in the model instead of being scored silently wrong.
UNTRUNCATED = sys.maxsize


@dataclass
class RecallScores:
    """How well the model recalls each fact's answer text after its question."""

    recall_loss: float  # mean over facts of the answer tokens' mean cross-entropy, nats
    answer_prob: float  # mean over facts of exp(-that cross-entropy), in [0, 1]
    per_fact_prob: list[float]  # exp(-cross-entropy) of each fact, in fact order
    per_fact_loss: list[float]  # that cross-entropy of each fact, nats, in fact order


def question_prompt(fact: Fact) -> str:
    """Return the question-only prompt: the question, then a line `Answer:`."""
    return f"{fact.question.strip()}\nAnswer:"


def answer_context(fact: Fact) -> str:
    """Return the text after which a fact's answer and choices are scored.

    That is its cloze `prompt` if it has one, else `question_prompt(fact)` (method.md section 7).
    """
    return fact.prompt.strip() if fact.prompt is not None else question_prompt(fact)


def model_device(model: PreTrainedModel) -> torch.device:
    """Return the device of the model's first parameter (where inputs must go)."""
    return next(model.parameters()).device


@contextlib.contextmanager
def evaluating(model: PreTrainedModel) -> Iterator[None]:
    """Eval mode under `torch.no_grad()`; each module's own train/eval flag is restored on exit."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


def forward_logits(model: PreTrainedModel, batch: Batch) -> torch.Tensor:
    """Logits of a padded batch, in the model's dtype, padding-side independent.

    position_ids = max(cumsum(attention_mask) - 1, 0), so a left-padded row sees the positions
    0, 1, ... it would see unpadded.

    Returns:
        (batch, seq, vocab) logits on the model's device.

    """
    batch = batch.to(model_device(model))
    position_ids = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)  # (batch, seq)
    output = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=position_ids)
    return output.logits


def check_padding_side(padding_side: str) -> None:
    """Refuse a padding side other than "right" or "left".

    Raises:
        ConfigError: naming the bad value.

    """
    if padding_side not in PADDING_SIDES:
        raise ConfigError(f"padding_side must be one of {PADDING_SIDES}, got {padding_side!r}")


def map_row_logits(
    model: PreTrainedModel,
    rows: Sequence[Sequence[int]],
    pad_token_id: int,
    batch_size: int,
    padding_side: PaddingSide,
    score: Callable[[int, torch.Tensor], torch.Tensor],
) -> list[torch.Tensor]:
    """Run token-id rows through the model in padded batches and apply `score` to each row's logits.

    `score(index, logits)` gets row `index`'s logits with the padding cut off, shape (len(row), vocab),
    where entry t holds the next-token logits after row[: t + 1].

    Raises:
        ConfigError: if `padding_side` is not "right" or "left" or `batch_size` < 1.

    """
    check_padding_side(padding_side)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    results = []
    with evaluating(model):
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            logits = forward_logits(model, pad(chunk, pad_token_id, side=padding_side))  # (batch, seq, vocab)
            for offset, row in enumerate(chunk):
                first = 0 if padding_side == "right" else logits.shape[1] - len(row)
                results.append(score(start + offset, logits[offset, first : first + len(row)]))
    return results


def continuation_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    contexts: Sequence[str],
    continuations: Sequence[str],
    batch_size: int = 16,
    padding_side: PaddingSide = "right",
) -> list[torch.Tensor]:
    """Log-probability of each continuation token given its context, for each (context, continuation).

    The context c is tokenised with BOS (`encode`), the continuation y alone without special tokens,
    and the ids are concatenated, so the boundary is exact: entry j = log p(y_j | c, y_<j), computed
    by an fp32 log-softmax of the logits.

    Returns:
        One (len(y),) fp32 CPU tensor per pair, in input order.

    Raises:
        DataError: if the two lists differ in length, or a context or continuation has no tokens.
        ConfigError: on a bad `padding_side` or `batch_size`.

    """
    if len(contexts) != len(continuations):
        raise DataError(f"{len(contexts)} contexts but {len(continuations)} continuations; pass one each")
    if not contexts:
        return []
    context_rows = encode(tokenizer, contexts, max_length=UNTRUNCATED)
    continuation_rows = tokenizer(list(continuations), add_special_tokens=False)["input_ids"]
    for index, continuation_ids in enumerate(continuation_rows):
        if not context_rows[index] or not continuation_ids:
            raise DataError(f"pair {index} ({contexts[index]!r}, {continuations[index]!r}) has an empty side")

    def score(index: int, logits: torch.Tensor) -> torch.Tensor:
        start = len(context_rows[index])
        targets = torch.tensor(continuation_rows[index], device=logits.device)  # (cont,)
        logprobs = logits[start - 1 : -1].float().log_softmax(-1)  # (cont, vocab)
        return logprobs.gather(-1, targets[:, None]).squeeze(-1).cpu()  # (cont,)

    rows = [c + y for c, y in zip(context_rows, continuation_rows, strict=True)]
    return map_row_logits(model, rows, pad_id(tokenizer), batch_size, padding_side, score)


def answer_recall(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    facts: Sequence[Fact],
    batch_size: int = 16,
    padding_side: PaddingSide = "right",
) -> RecallScores:
    """Answer probability and recall loss (RepSelect's metric) of each fact's answer text.

    ce_f = -(1/|y|) Σ_j log p(y_j | q_f, y_<j), with q_f = `answer_context(f)` and y the tokens of
    f" {answer_text}"; recall_loss = mean_f ce_f and answer_prob = mean_f exp(-ce_f).

    Raises:
        DataError: if `facts` is empty.
        ConfigError: on a bad `padding_side` or `batch_size`.

    """
    if not facts:
        raise DataError("answer_recall: no facts to score")
    contexts = [answer_context(fact) for fact in facts]
    answers = [f" {fact.answer_text}" for fact in facts]
    logprobs = continuation_logprobs(model, tokenizer, contexts, answers, batch_size, padding_side)
    losses = [-float(row.mean()) for row in logprobs]
    probs = [math.exp(-loss) for loss in losses]
    return RecallScores(sum(losses) / len(losses), sum(probs) / len(probs), probs, losses)


def general_loss(model: PreTrainedModel, batches: Sequence[Batch]) -> float:
    """Mean next-token cross-entropy over every real target token of all batches (token-weighted).

    L = Σ_{b,t} m_{b,t} CE(logits_{b,t}, x_{b,t+1}) / Σ m, with m_{b,t} = mask_{b,t} · mask_{b,t+1}
    (a real token predicting a real token), computed in fp32.

    Raises:
        DataError: if the batches hold no real target token.

    """
    return loss_and_kl(model, batches)[0]


def loss_and_kl(
    model: PreTrainedModel, batches: Sequence[Batch], reference: Sequence[torch.Tensor] | None = None
) -> tuple[float, float | None]:
    """`general_loss` and, given a reference, `kl_to_reference`, from one forward pass per batch.

    The budget check of every epoch needs both on the same text: one pass instead of two.

    Raises:
        DataError: as `general_loss`, and as `kl_to_reference` for a reference that does not match.
    """
    if reference is not None and len(reference) != len(batches):
        raise DataError(f"{len(reference)} reference tensors for {len(batches)} batches; rebuild it")
    loss, targets_count, kl, tokens = 0.0, 0, 0.0, 0
    with evaluating(model):
        for index, batch in enumerate(batches):
            logits = forward_logits(model, batch)  # (batch, seq, vocab)
            ids = batch.input_ids.to(logits.device)
            real = batch.attention_mask.to(logits.device).bool()
            targets = real[:, 1:] & real[:, :-1]  # (batch, seq - 1)
            predicted = logits[:, :-1][targets].float()  # (targets, vocab)
            loss += F.cross_entropy(predicted, ids[:, 1:][targets], reduction="sum").item()
            targets_count += int(targets.sum())
            if reference is not None:
                kl += _kl_sum(reference[index], logits[real].float().log_softmax(-1), index)
                tokens += int(real.sum())
    if targets_count == 0:
        raise DataError("general_loss: the batches hold no real target tokens")
    return loss / targets_count, (kl / tokens if reference is not None else None)


def _kl_sum(stored: torch.Tensor, current: torch.Tensor, index: int) -> float:
    """Σ over one batch's real tokens of KL(reference || current); `current` is (tokens, vocab) log-probs."""
    if stored.shape != current.shape:
        shapes = f"{tuple(stored.shape)} != {tuple(current.shape)}"
        raise DataError(f"batch {index}: reference shape {shapes}; rebuild the reference")
    ref = stored.to(current.device, torch.float32).log_softmax(-1)  # (tokens, vocab)
    return (ref.exp() * (ref - current)).sum().item()


def real_token_logprobs(model: PreTrainedModel, batch: Batch) -> torch.Tensor:
    """fp32 next-token log-softmax at every real (unpadded) token of a batch, row-major.

    Returns:
        (real tokens, vocab) on the model's device.

    """
    logits = forward_logits(model, batch)  # (batch, seq, vocab)
    real = batch.attention_mask.to(logits.device).bool()  # (batch, seq)
    return logits[real].float().log_softmax(-1)  # (tokens, vocab)


def reference_logprobs(model: PreTrainedModel, batches: Sequence[Batch]) -> list[torch.Tensor]:
    """Compute the original model's log-probabilities log p_ref(v | x_≤t) for `kl_to_reference`.

    Stored on CPU in bfloat16, one (real tokens, vocab) tensor per batch: memory = tokens × vocab × 2
    bytes (e.g. 10k tokens × 128k vocab ≈ 2.6 GB for Llama-3).
    """
    with evaluating(model):
        return [real_token_logprobs(model, batch).to(torch.bfloat16).cpu() for batch in batches]


def kl_to_reference(
    model: PreTrainedModel, batches: Sequence[Batch], reference: Sequence[torch.Tensor]
) -> float:
    """Mean over real tokens of KL(reference || current), in fp32.

    KL_t = Σ_v p_ref(v) (log p_ref(v) - log p_cur(v)), averaged over all real tokens of all batches.
    The bfloat16 reference is renormalised (log-softmax again) so that rounding cannot make KL negative;
    the rounding leaves a small floor on the unchanged model (4e-5 nats on a tiny random Llama), far
    below RepSelect's 0.01 budget.

    Raises:
        DataError: if `reference` does not match `batches` (count or a batch's shape), or there are no
            real tokens.

    """
    if not any(int(b.attention_mask.sum()) for b in batches):
        raise DataError("kl_to_reference: the batches hold no real tokens")
    kl = loss_and_kl(model, batches, reference)[1]
    assert kl is not None  # a reference was given
    return kl
