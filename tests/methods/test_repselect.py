"""RepSelect on tiny models built from config (Llama and GPT-2's Conv1D)."""

import json
import math

import pytest
import torch
from safetensors import safe_open

import tiny
from cir.errors import ConfigError
from cir.hooks import forward_cross_entropy
from cir.losses import cross_entropy
from cir.methods.repselect import Config, RepSelect, collapse_gradient
from cir.modules import weight_update
from cir.unlearn import UnlearnConfig, UnlearnData, unlearn


def setup_method(arch="llama", **overrides):
    return tiny.set_up(RepSelect, Config(**{"k": 2, **overrides}), arch, retain=None)


def gather(method, forget, epoch=0):
    """One epoch of step() calls; returns a copy of the accumulated (d_out, d_in) gradients."""
    for index in range(len(forget)):
        method.step(index, 0, epoch)
    return [g.clone() for g in method.gradients]


def oriented_weights(method):
    return [weight_update(m, m.weight.detach().clone()) for m in method.modules]  # (d_out, d_in)


def forget_ce(model, forget):
    with torch.no_grad():
        return sum(float(forward_cross_entropy(model, b)) for b in forget) / len(forget)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_hard_collapse_removes_exactly_the_top_singular_directions(arch):
    model, forget, method = setup_method(arch, k=3, lr=0.5, exact_svd=True)
    grads = gather(method, forget)
    before = oriented_weights(method)
    logs = method.end_epoch(0)
    removed_energy = 0.0
    for grad, old, new in zip(grads, before, oriented_weights(method)):
        u, s, vh = torch.linalg.svd(grad, full_matrices=False)  # oracle: the full SVD, computed here
        expected = u[:, 3:] @ torch.diag(s[3:]) @ vh[3:]  # Σ_{i>=k} s_i u_i v_iᵀ
        torch.testing.assert_close(new - old, -0.5 * expected, atol=1e-6 * float(s[0]), rtol=0)
        removed_energy += float(s[:3].pow(2).sum())
    total = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
    assert logs["removed_fraction"] == pytest.approx(math.sqrt(removed_energy) / total, rel=1e-4)
    assert logs["grad_norm"] == pytest.approx(total, rel=1e-5)


def test_soft_collapse_maps_singular_values():
    model, forget, method = setup_method("llama", k=3)
    for grad in gather(method, forget):
        u, s, vh = torch.linalg.svd(grad, full_matrices=False)
        soft = collapse_gradient(grad, 3, soft=True, exact=True)
        mapped = torch.cat([s[3] ** 2 / s[:3], s[3:]])  # s_i -> s_k² / s_i for i < k, unchanged after
        # the singular vectors are kept, each singular value mapped: diag(Uᵀ G̃ V) = mapped
        atol = 1e-6 * float(s[0])
        torch.testing.assert_close(torch.diagonal(u.T @ soft @ vh.T), mapped, atol=atol, rtol=1e-4)
        sorted_mapped = mapped.sort(descending=True).values
        torch.testing.assert_close(torch.linalg.svdvals(soft), sorted_mapped, atol=atol, rtol=1e-4)
        assert torch.all(mapped[:3] < s[:3]) and mapped[:3].min() > 0  # shrunk, not removed


@pytest.mark.parametrize("soft", [False, True])
def test_randomised_svd_matches_the_exact_one_on_a_decaying_spectrum(soft):
    # tiny random models have nearly flat gradient spectra; real ones decay, as here (s_i = 0.7^i)
    generator = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(96, 40, generator=generator))
    v, _ = torch.linalg.qr(torch.randn(48, 40, generator=generator))
    grad = u @ torch.diag(0.7 ** torch.arange(40.0)) @ v.T  # (96, 48)
    fast = collapse_gradient(grad, 4, soft=soft)
    exact = collapse_gradient(grad, 4, soft=soft, exact=True)
    torch.testing.assert_close(fast, exact, atol=1e-5, rtol=0)
    assert (grad - exact).norm() > 0.5  # the top directions (s = 1, 0.7, ...) really were collapsed


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_without_collapse_the_step_is_the_summed_autograd_gradient(arch):
    model, forget, method = setup_method(arch, k=0, lr=0.3)
    weights = method.trained_parameters()
    loss = sum(  # oracle: Σ_batches -CE by autograd, in the stored orientation
        -cross_entropy(
            model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits,
            b.input_ids,
            b.attention_mask,
        )
        for b in forget
    )
    expected = torch.autograd.grad(loss, weights)
    before = [w.detach().clone() for w in weights]
    gather(method, forget)
    logs = method.end_epoch(0)
    assert logs["removed_fraction"] == 0.0
    for weight, old, grad in zip(weights, before, expected):
        torch.testing.assert_close(weight.detach(), old - 0.3 * grad, atol=1e-7, rtol=1e-5)
    assert method.gradients is None  # the next epoch starts a fresh sum


def test_step_norm_scales_the_whole_update():
    model, forget, method = setup_method("llama", k=2, step_norm=0.07)
    gather(method, forget)
    before = oriented_weights(method)
    logs = method.end_epoch(0)
    step = math.sqrt(sum(float((b - a).pow(2).sum()) for a, b in zip(before, oriented_weights(method))))
    assert step == pytest.approx(0.07, rel=1e-4)
    assert 0 < logs["update_norm"] < logs["grad_norm"]


def lora_names(model):
    return [n for n, _ in model.named_modules() if "lora" in n.lower()] + [
        k for k in model.state_dict() if "lora" in k.lower()
    ]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_adversarial_lora_is_active_while_gathering_then_gone(arch, tmp_path):
    model, forget, plain = setup_method(arch, lora_lr=0.05)
    plain_grads = gather(plain, forget)  # same weights, no adapter
    model_state = {k: v.clone() for k, v in model.state_dict().items()}
    _, _, method = setup_method(arch, adversarial_lora=True, lora_lr=0.05)
    method.model.load_state_dict(model_state)
    method.step(0, 0, epoch=0)
    assert lora_names(method.model)  # injected for the epoch
    for index in range(1, len(forget)):
        method.step(index, 0, epoch=0)
    # the relearning adapter trained only itself, and it changed the gathered gradient
    for module, weight in zip(method.modules, [model_state[f"{m.name}.weight"] for m in method.modules]):
        assert torch.equal(module.weight.detach(), weight)
    assert any((a - b).abs().max() > 1e-4 * b.abs().max() for a, b in zip(method.gradients, plain_grads))
    logs = method.end_epoch(0)
    assert logs["lora_loss"] > 0 and "update_norm" in logs
    assert lora_names(method.model) == []
    assert all(m.weight.requires_grad for m in method.modules)
    method.model.save_pretrained(tmp_path)
    assert not (tmp_path / "adapter_config.json").exists()
    assert "lora" not in json.dumps(json.loads((tmp_path / "config.json").read_text())).lower()
    with safe_open(tmp_path / "model.safetensors", "pt") as saved:
        keys = list(saved.keys())
    assert keys and not [k for k in keys if "lora" in k.lower()]


def test_adapter_is_removed_when_a_step_fails(monkeypatch):
    model, forget, method = setup_method("llama", adversarial_lora=True)

    def broken(*args, **kwargs):
        raise RuntimeError("loss failed")

    monkeypatch.setattr("cir.methods.repselect.forward_cross_entropy", broken)
    with pytest.raises(RuntimeError, match="loss failed"):
        method.step(0, 0, epoch=0)
    assert lora_names(model) == [] and method.adapter is None


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("collapse", ["hard", "soft"])
def test_two_epochs_raise_the_forget_cross_entropy(arch, collapse):
    model, forget, method = setup_method(arch, collapse=collapse, lr=3.0)
    before = forget_ce(model, forget)
    tiny.run_epochs(method, len(forget))
    assert forget_ce(model, forget) > before + 0.01  # -CE is the loss: the forget text gets less likely


def test_runs_through_the_shared_loop_under_a_kl_budget():
    data = UnlearnData(forget_facts=tiny.FACTS, retain_texts=tiny.TEXTS[3:5], general_texts=tiny.TEXTS)
    config = UnlearnConfig(method="repselect", budget=1e9, budget_metric="kl", max_epochs=2, batch_size=4)
    result = unlearn(
        tiny.model("llama", layers=3), tiny.tokenizer(), data, config, Config(k=2), progress=False
    )
    assert result.stop_reason == "max_epochs" and len(result.history) == 3
    last = result.history[-1]
    assert last.disruption.kl > 0 and last.train["forget_loss"] < 0 and 0 < last.train["removed_fraction"] < 1


def test_bad_settings_are_reported_together():
    with pytest.raises(ConfigError, match=r"method\.k must be >= 0") as caught:
        Config(k=-1, oversampling=0, step_norm=0.0)
    assert "method.oversampling must be >= 1, got 0" in str(caught.value)
    assert "method.step_norm must be > 0 or null, got 0.0" in str(caught.value)
