"""The retain step: zero loss on the original model, and a step that pulls a moved model back."""

import torch

import tiny
from cir.data.batches import make_batches
from cir.modules import mlp_modules
from cir.retain import ResidualAnchor


def test_the_anchor_is_exact_at_the_original_and_a_step_pulls_back():
    model = tiny.model("llama", layers=3)
    batches = make_batches(tiny.tokenizer(), tiny.TEXTS[3:5], 2, 32)
    anchor = ResidualAnchor(model, batches, layer=1)
    weights = [m.weight for m in mlp_modules(model, [0, 1])]
    assert anchor.step(0, weights, lr=0.0).item() == 0.0  # the cached h0 is the model's own
    with torch.no_grad():
        weights[0].add_(0.05 * torch.randn(weights[0].shape, generator=torch.Generator().manual_seed(0)))
    moved = anchor.step(0, weights, lr=0.5)  # the loss before the step
    after = anchor.step(0, weights, lr=0.0)
    assert moved.item() > 0 and after.item() < moved.item()
    assert all(w.grad is None for w in weights)  # the step clears what it used
