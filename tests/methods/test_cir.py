"""Exactness of CIR's update on tiny models built from config (Llama and GPT-2's Conv1D)."""

import pytest
import torch
import torch.nn.functional as F

import tiny
from cir.collapse import collapsed_weight_grad, fit_basis, projector
from cir.hooks import forward, record
from cir.losses import mlp_breaking
from cir.methods.cir import CIR, Config, shaped_defaults
from cir.modules import ModelShape, weight_update


def setup_cir(arch, **overrides):
    config = Config(**{"forget_layers": [1, 2], "retain_lr": 0.0, **overrides})
    return tiny.set_up(CIR, config, arch, retain=None)


def kept_only_autograd_grads(model, method, batch):
    """Oracle: autograd's weight gradients of the MLP-breaking loss counting only kept tokens.

    Non-kept positions use a detached weight, so autograd attributes them nothing: an independent
    computation of sum over kept t of g_t x_t^T.
    """
    kept = batch.kept_tokens()

    def hook_for(module):
        def hook(mod, args, output):
            weight = mod.weight.detach()
            frozen = (
                args[0] @ weight + mod.bias
                if method.modules[0].transposed
                else F.linear(args[0], weight, mod.bias)
            )
            return torch.where(kept[..., None], output, frozen)

        return hook

    handles = [m.module.register_forward_hook(hook_for(m.module)) for m in method.modules]
    try:
        with record(method.blocks) as outputs:
            forward(model, batch, method.last_layer)
        loss = mlp_breaking([r.outputs[0][kept] for r in outputs], method.originals[0], method.norms[0])
        grads = torch.autograd.grad(loss, [m.weight for m in method.modules])
    finally:
        for h in handles:
            h.remove()
    return grads


def perturb(model, seed=1):
    # at the original weights the MLP-breaking loss is at its maximum; move off it a little
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=generator))


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_all_token_rebuilt_gradient_equals_autograd(arch):
    model, batches, method = setup_cir(arch, k_act=0, k_grad=0)
    perturb(model)
    batch = batches[0]
    with record(method.blocks) as outputs, record([m.module for m in method.modules], inputs=True) as io:
        forward(model, batch, method.last_layer)
    real = batch.attention_mask.bool()
    loss = mlp_breaking(
        [r.outputs[0][real] for r in outputs],
        [o.detach() * 0.5 + 0.1 for o in [r.outputs[0][real] for r in outputs]],
        [torch.tensor(1.0)] * 2,
    )
    found = torch.autograd.grad(loss, [r.outputs[0] for r in io] + [m.weight for m in method.modules])
    output_grads, weight_grads = found[: len(io)], found[len(io) :]
    for module, rec, g, expected in zip(method.modules, io, output_grads, weight_grads):
        empty_in, empty_out = fit_basis(rec.inputs[0][real], 0), fit_basis(g[real], 0)
        rebuilt = collapsed_weight_grad(rec.inputs[0][real], g[real], empty_in, empty_out)
        torch.testing.assert_close(weight_update(module, rebuilt), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_zero_component_step_is_normalised_autograd_step(arch):
    model, batches, method = setup_cir(arch, k_act=0, k_grad=0, step_norm=0.05)
    perturb(model)
    method.end_epoch(0)  # bases (empty) fitted: the next step updates
    expected = kept_only_autograd_grads(model, method, batches[0])
    norm = torch.sqrt(sum(g.pow(2).sum() for g in expected))
    before = [m.weight.detach().clone() for m in method.modules]
    method.step(0, 0, epoch=1)
    for module, old, grad in zip(method.modules, before, expected):
        torch.testing.assert_close(module.weight.detach() - old, -0.05 * grad / norm, atol=1e-7, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_collapsed_step_has_no_component_along_collapsed_directions(arch):
    model, batches, method = setup_cir(arch, k_act=3, k_grad=2, step_norm=0.05)
    perturb(model)
    for index in range(len(batches)):
        method.step(index, index, epoch=0)
    method.end_epoch(0)
    before = [m.weight.detach().clone() for m in method.modules]
    method.step(0, 0, epoch=1)
    for module, old, (act, grad) in zip(method.modules, before, method.collapse_bases):
        delta = weight_update(module, module.weight.detach() - old)  # (d_out, d_in)
        assert act.shape[0] == 3 and grad.shape[0] == 2
        assert delta.abs().max() > 0
        assert (delta @ act.T).abs().max() < 1e-5 * delta.abs().max() * delta.shape[1]
        assert (grad @ delta).abs().max() < 1e-5 * delta.abs().max() * delta.shape[0]


def test_epoch_zero_only_gathers_statistics():
    model, batches, method = setup_cir("llama")
    before = [p.detach().clone() for p in model.parameters()]
    for index in range(len(batches)):
        logs = method.step(index, index, epoch=0)
    assert "update_norm" not in logs
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert sum(x.shape[0] for x in method.vectors.inputs[0]) == sum(b.kept_tokens().sum() for b in batches)


def test_retain_step_moves_weights_toward_original_residual():
    model, batches, method = setup_cir("llama", retain_lr=0.5)
    perturb(model)
    loss_before = method.anchor.step(0, method.trained_parameters(), method.config.retain_lr)
    loss_after = method.anchor.step(0, method.trained_parameters(), method.config.retain_lr)
    assert loss_after < loss_before


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_soft_collapse_removes_the_mean_and_shrinks_the_components(arch):
    model, batches, method = setup_cir(arch, k_act=4, k_grad=0, collapse="soft", step_norm=0.05)
    perturb(model)
    for index in range(len(batches)):
        method.step(index, index, epoch=0)
    method.end_epoch(0)
    expected = kept_only_autograd_grads(model, method, batches[0])  # uncollapsed, at the same weights
    before = [m.weight.detach().clone() for m in method.modules]
    method.step(0, 0, epoch=1)
    plain = [weight_update(m, g) for m, g in zip(method.modules, expected)]  # (d_out, d_in)
    collapsed = [g @ projector(act) for g, (act, _) in zip(plain, method.collapses)]  # G P_soft
    norm = torch.sqrt(sum(c.pow(2).sum() for c in collapsed))
    for module, old, grad, update, (act, _) in zip(
        method.modules, before, plain, collapsed, method.collapses
    ):
        delta = weight_update(module, module.weight.detach() - old)  # (d_out, d_in) = -η G P / N
        torch.testing.assert_close(delta, -0.05 * update / norm, atol=1e-7, rtol=1e-4)
        keep = act.keep
        assert act.basis.shape[0] == 4 and keep[0] == 0
        assert torch.all((keep[1:] > 0) & (keep[1:] < 1)), keep
        along = delta @ act.basis.T  # (d_out, 4): the update's component along each collapsed direction
        assert along[:, 0].abs().max() < 1e-5 * delta.abs().max() * delta.shape[1]  # mean: removed
        # each PC direction: the plain gradient's component times its keep-weight (shrunk, not removed)
        torch.testing.assert_close(along[:, 1:], -0.05 / norm * (grad @ act.basis.T)[:, 1:] * keep[1:])
        assert along[:, 1:].abs().amax(0).min() > 0


def test_bfloat16_model_gets_finite_fp32_collapsed_updates():
    model, batches, method = setup_cir("llama", k_act=3, k_grad=2, step_norm=0.05)
    model.to(torch.bfloat16)
    for index in range(len(batches)):
        method.step(index, index, epoch=0)
    method.end_epoch(0)
    assert all(basis.dtype == torch.float32 for pair in method.collapse_bases for basis in pair)
    before = [m.weight.detach().clone() for m in method.modules]
    logs = method.step(0, 0, epoch=1)
    assert all(m.weight.dtype == torch.bfloat16 for m in method.modules)
    assert logs["update_norm"] > 0 and torch.isfinite(logs["update_norm"])
    assert any(not torch.equal(m.weight, old) for m, old in zip(method.modules, before))


@pytest.mark.parametrize(
    ("shape", "layers", "k_act", "k_grad"),
    [
        (ModelShape(4, 128), [0, 1, 2], 24, 24),  # the demo model (its tuned layers)
        (ModelShape(30, 576), [6, 7, 8, 9, 10, 11], 24, 36),  # SmolLM2-135M
        (ModelShape(32, 4096), [6, 7, 8, 9, 10, 11], 24, 36),  # Llama-3.1-8B: the paper's
        (ModelShape(2, 16), [0, 1], 3, 3),  # clipped to the model, 3/16 of the width
    ],
)
def test_shaped_defaults_follow_depth_and_width(shape, layers, k_act, k_grad):
    assert shaped_defaults(shape) == {"forget_layers": layers, "k_act": k_act, "k_grad": k_grad}


def test_unset_layers_and_components_follow_the_model_and_explicit_values_win():
    config = Config(retain_lr=0.0)
    model, batches, method = tiny.set_up(CIR, config, layers=10, retain=None)  # 10 layers, 32 wide
    assert method.forget_layers == [2, 3, 4] and (method.config.k_act, method.config.k_grad) == (6, 6)
    assert config.forget_layers is None and config.k_act is None  # the caller's config is left as it was
    assert sorted({m.layer for m in method.modules}) == [0, 1, 2, 3, 4]
    for index in range(len(batches)):
        method.step(index, index, epoch=0)
    method.end_epoch(0)
    assert {(act.shape[0], grad.shape[0]) for act, grad in method.collapse_bases} == {(6, 6)}
    explicit = Config(forget_layers=[1], k_act=2, retain_lr=0.0)
    _, _, method = tiny.set_up(CIR, explicit, layers=10, retain=None)
    assert method.forget_layers == [1] and (method.config.k_act, method.config.k_grad) == (2, 6)
