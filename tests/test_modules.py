import pytest
from transformers import GemmaConfig, GemmaForCausalLM, MistralConfig, MistralForCausalLM

import tiny
from cir.errors import ModelError
from cir.modules import decoder_layers, mlp_blocks, mlp_modules

EXPECTED = {
    "llama": ["gate_proj", "up_proj", "down_proj"],
    "qwen2": ["gate_proj", "up_proj", "down_proj"],
    "gpt_neox": ["dense_h_to_4h", "dense_4h_to_h"],
    "gpt2": ["c_fc", "c_proj"],
}


@pytest.mark.parametrize("arch", tiny.ARCHITECTURES)
def test_finds_mlp_linears_per_layer(arch):
    model = tiny.model(arch, layers=3)
    found = mlp_modules(model, [0, 2])
    assert [m.layer for m in found] == [0] * len(EXPECTED[arch]) + [2] * len(EXPECTED[arch])
    assert sorted(m.name.rsplit(".", 1)[1] for m in found if m.layer == 0) == sorted(EXPECTED[arch])
    assert all(".mlp." in m.name for m in found)
    assert all(m.transposed == (arch == "gpt2") for m in found)
    assert len(decoder_layers(model)) == 3
    assert len(mlp_blocks(model, [0, 1, 2])) == 3


@pytest.mark.parametrize(
    "config_class,model_class", [(MistralConfig, MistralForCausalLM), (GemmaConfig, GemmaForCausalLM)]
)
def test_other_llama_style_families(config_class, model_class):
    config = config_class(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
    )
    found = mlp_modules(model_class(config))
    assert len(found) == 6


def test_patterns_select_other_modules():
    model = tiny.model("llama", layers=2)
    found = mlp_modules(model, patterns=["*.self_attn.o_proj"])
    assert [m.name for m in found] == ["model.layers.0.self_attn.o_proj", "model.layers.1.self_attn.o_proj"]


def test_no_match_lists_candidates():
    model = tiny.model("llama", layers=2)
    with pytest.raises(ModelError, match=r"model\.layers\.0\.mlp\.gate_proj"):
        mlp_modules(model, patterns=["*.nothing"])


def test_layer_out_of_range():
    model = tiny.model("gpt2", layers=2)
    with pytest.raises(ModelError, match=r"layer 5 is out of range: the model has 2 layers \(0\.\.1\)"):
        mlp_modules(model, [0, 5])
