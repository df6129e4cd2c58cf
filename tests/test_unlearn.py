"""The shared loop: budget stop returns the last in-budget weights; the model is left whole."""

import dataclasses
import os
import signal

import pytest
import torch

import cir.methods  # noqa: F401
import tiny
from cir.methods.cir import CIR, Config
from cir.modules import decoder_layers
from cir.unlearn import UnlearnConfig, UnlearnData, unlearn

DATA = UnlearnData(list(tiny.FACTS), tiny.TEXTS[:5], tiny.TEXTS[3:])


def run(max_epochs, budget=1e9, model=None, loop=tiny.PAPER_LOOP, **method):
    model = model if model is not None else tiny.model("llama", layers=3)
    config = UnlearnConfig(budget=budget, max_epochs=max_epochs, batch_size=2, track_kl=False, **loop)
    method_config = Config(**{"forget_layers": [1, 2], "k_act": 2, "k_grad": 2, "step_norm": 0.5, **method})
    return unlearn(model, tiny.tokenizer(), DATA, config, method_config, progress=False)


def weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_budget_stop_returns_last_in_budget_epoch():
    free = run(max_epochs=6, step_norm=2.0, retain_lr=0.0)
    losses = [h.disruption.general_loss for h in free.history]
    assert free.stop_reason == "max_epochs" and len(losses) == 7
    # the first epoch after some updates whose loss tops every earlier one: the budget is set
    # between them, so the run must stop there and hand back the previous epoch's weights
    over = next(e for e in range(3, 7) if losses[e] > max(losses[:e]))
    limit = (max(losses[:over]) + losses[over]) / 2 / losses[0] - 1
    expected = weights(run(max_epochs=over - 1, step_norm=2.0, retain_lr=0.0).model)
    assert any(not torch.equal(expected[n], p) for n, p in tiny.model("llama", layers=3).named_parameters())
    stopped = run(max_epochs=6, budget=limit, step_norm=2.0, retain_lr=0.0)
    assert stopped.stop_reason == "budget"
    assert stopped.epochs == over - 1
    got = weights(stopped.model)
    assert all(torch.equal(got[n], expected[n]) for n in expected)


def test_same_seed_same_numbers():
    first, second = run(max_epochs=2), run(max_epochs=2)
    strip = lambda hs: [dataclasses.replace(h, seconds=0.0, check_seconds=0.0) for h in hs]  # noqa: E731
    assert strip(first.history) == strip(second.history)
    assert first.history[1].train  # the method's own step logs reach the record


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_model_whole_after_run_and_same_logits_as_a_fresh_copy():
    result = run(max_epochs=2)
    model = result.model
    assert len(decoder_layers(model)) == 3 and hook_count(model) == 0
    fresh = tiny.model("llama", layers=3)
    fresh.load_state_dict(model.state_dict())
    ids = tiny.tokenizer()(tiny.TEXTS[:2], return_tensors="pt", padding=True)
    torch.testing.assert_close(model(**ids).logits, fresh(**ids).logits, atol=0, rtol=0)
    assert all(p.requires_grad for p in model.parameters())  # flags restored


def test_model_whole_after_exception_inside_a_step(monkeypatch):
    model = tiny.model("llama", layers=3)
    before = weights(model)
    ids = tiny.tokenizer()(tiny.TEXTS[:2], return_tensors="pt", padding=True)
    logits = model(**ids).logits

    def broken(*args, **kwargs):
        raise RuntimeError("loss failed")

    monkeypatch.setattr("cir.methods.cir.mlp_breaking", broken)
    with pytest.raises(RuntimeError, match="loss failed"):
        run(max_epochs=2, model=model)
    assert len(decoder_layers(model)) == 3 and hook_count(model) == 0
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    torch.testing.assert_close(model(**ids).logits, logits, atol=0, rtol=0)
    assert all(p.requires_grad for p in model.parameters())


def test_ctrl_c_stops_after_the_current_step_with_the_last_kept_weights(monkeypatch):
    # a real SIGINT during the first step of the third epoch: that step finishes, the epoch is
    # dropped, and the model is the one after epoch 2 (the same as a 2-epoch run)
    original_step = CIR.step

    def step_then_press(self, forget_index, retain_index, epoch):
        result = original_step(self, forget_index, retain_index, epoch)
        if epoch == 2 and forget_index == 0:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    expected = weights(run(max_epochs=2).model)
    monkeypatch.setattr(CIR, "step", step_then_press)
    handler = signal.getsignal(signal.SIGINT)
    stopped = run(max_epochs=5)
    assert stopped.stop_reason == "interrupted" and stopped.epochs == 2
    got = weights(stopped.model)
    assert all(torch.equal(got[n], expected[n]) for n in expected)
    assert signal.getsignal(signal.SIGINT) is handler  # the loop's handler is gone
