"""Forward hooks: record module inputs/outputs, and stop the forward pass early (layer trimming).

Every hook is installed by a context manager and removed on exit, even after an exception, so no
hook outlives the step that needed it (the CIR authors' relearning attack silently trained only the
early layers because a trimmed model was never restored).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PreTrainedModel

from cir.data.batches import Batch
from cir.losses import cross_entropy
from cir.modules import decoder_layers


class StopForward(Exception):
    """Raised by a hook to end the forward pass once every needed layer has run."""


@dataclass
class Recording:
    """What one module saw during a forward pass."""

    inputs: list[torch.Tensor] = field(default_factory=list)  # detached, (batch, seq, d_in) each call
    outputs: list[torch.Tensor] = field(default_factory=list)  # attached to the graph, (batch, seq, d_out)


def _first_tensor(value: object) -> torch.Tensor:
    # Decoder layers return a tensor in transformers 5 and a tuple (hidden, ...) in older releases.
    return value[0] if isinstance(value, tuple) else value  # type: ignore[return-value]


@contextmanager
def record(modules: Sequence[nn.Module], inputs: bool = False) -> Iterator[list[Recording]]:
    """Record each module's output (kept in the autograd graph) and, if asked, its detached input.

    Yields one `Recording` per module, in the order given.
    """
    recordings = [Recording() for _ in modules]

    def hook_for(recording: Recording):
        def hook(_module: nn.Module, args: tuple, output: object) -> None:
            if inputs:
                recording.inputs.append(args[0].detach())
            recording.outputs.append(_first_tensor(output))

        return hook

    handles = [m.register_forward_hook(hook_for(r)) for m, r in zip(modules, recordings, strict=True)]
    try:
        yield recordings
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def stop_after_layer(model: PreTrainedModel, last_layer: int | None) -> Iterator[None]:
    """Make the forward pass raise `StopForward` once decoder layer `last_layer` has run.

    Layer trimming without touching the model: the layers above `last_layer`, the final norm and
    the LM head are skipped (a large saving when the losses read middle layers), and nothing needs
    restoring afterwards. `None` leaves the forward pass whole.
    """
    if last_layer is None:
        yield
        return

    def hook(_module: nn.Module, _args: tuple, _output: object) -> None:
        raise StopForward

    handle = decoder_layers(model)[last_layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def forward(model: PreTrainedModel, batch: Batch, last_layer: int | None = None) -> torch.Tensor | None:
    """Run `model` on `batch`, stopping after `last_layer` when given; returns the logits otherwise."""
    with stop_after_layer(model, last_layer):
        try:
            return model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
            ).logits
        except StopForward:
            return None


def full_logits(model: PreTrainedModel, batch: Batch) -> torch.Tensor:
    """The logits of a whole forward pass (`forward` without a last layer)."""
    logits = forward(model, batch)
    assert logits is not None  # only a last_layer stops the pass early
    return logits


def forward_cross_entropy(model: PreTrainedModel, batch: Batch) -> torch.Tensor:
    """Mean next-token cross-entropy of `model` on `batch` (whole forward), attached to the graph."""
    return cross_entropy(full_logits(model, batch), batch.input_ids, batch.attention_mask)


def kept_outputs(
    model: PreTrainedModel, batch: Batch, modules: Sequence[nn.Module], last_layer: int | None
) -> list[torch.Tensor]:
    """Each module's output on the batch's kept tokens, attached to the graph, (tokens, d) each.

    The forward pass stops after `last_layer`.
    """
    with record(modules) as recordings:
        forward(model, batch, last_layer)
    kept = batch.kept_tokens()
    return [on_kept(r.outputs[0], kept) for r in recordings]


def on_kept(values: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """The rows of `values` (batch, seq, d) at the kept positions, (tokens, d).

    The mask follows the values to their device: with accelerate's device_map, layers (and so
    their activations) sit on different GPUs.
    """
    return values[kept.to(values.device)]


def layer_outputs(model: PreTrainedModel, layers: Sequence[int]) -> list[nn.Module]:
    """The decoder-layer modules whose outputs are the residual stream after each of `layers`."""
    blocks = decoder_layers(model)
    return [blocks[i] for i in layers]
