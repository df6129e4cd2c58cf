import pytest
import torch

import tiny
from cir.data.batches import make_batches
from cir.hooks import forward, record
from cir.modules import decoder_layers, mlp_blocks


def hook_count(model):
    return sum(len(m._forward_hooks) for m in model.modules())


@pytest.mark.parametrize("arch", tiny.ARCHITECTURES)
def test_trimmed_forward_records_only_lower_layers_and_removes_hooks(arch):
    model = tiny.model(arch, layers=4)
    batch = make_batches(tiny.tokenizer(), tiny.TEXTS[:3], 3)[0]
    with record(mlp_blocks(model, [0, 1, 3])) as outputs:
        logits = forward(model, batch, last_layer=1)
    assert logits is None
    assert [len(r.outputs) for r in outputs] == [1, 1, 0]
    assert hook_count(model) == 0
    full = forward(model, batch)
    assert full.shape[:2] == batch.input_ids.shape


def test_hooks_removed_after_exception_and_logits_unchanged():
    model = tiny.model("llama", layers=3)
    batch = make_batches(tiny.tokenizer(), tiny.TEXTS[:3], 3)[0]
    before = forward(model, batch)
    with pytest.raises(RuntimeError), record(mlp_blocks(model, [0])):
        forward(model, batch, last_layer=2)
        raise RuntimeError("inside the step")
    assert hook_count(model) == 0
    assert len(decoder_layers(model)) == 3
    torch.testing.assert_close(forward(model, batch), before, atol=0, rtol=0)


def test_recorded_inputs_are_detached_and_outputs_attached():
    model = tiny.model("llama", layers=2)
    batch = make_batches(tiny.tokenizer(), tiny.TEXTS[:2], 2)[0]
    module = model.model.layers[0].mlp.down_proj
    with record([module], inputs=True) as (rec,):
        forward(model, batch, last_layer=0)
    assert not rec.inputs[0].requires_grad
    assert rec.outputs[0].requires_grad
    torch.testing.assert_close(rec.outputs[0], module(rec.inputs[0]))
