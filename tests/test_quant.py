"""GGUF block round trips: exact on weights already on the grid, and they erase sub-half-step edits."""

import pytest
import torch

import tiny
from cir.errors import ConfigError
from cir.quant import BLOCK_FORMATS, linear_modules, round_trip, round_trip_rows

# the grid step of one block of 32 values, as llama.cpp's reference quantizers set it
STEPS = {
    "Q8_0": lambda b: b.abs().max() / 127,
    "Q4_0": lambda b: b.abs().max() / 8,
    "Q4_1": lambda b: (b.max() - b.min()) / 15,
}


def weights(model):
    return {n: m.weight.detach().clone() for n, m in linear_modules(model).items()}


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("name", BLOCK_FORMATS)
def test_a_second_round_trip_changes_nothing(arch, name):
    model = tiny.model(arch)
    before = weights(model)
    first = round_trip(model, name)
    assert first.quantized and not first.skipped
    once = weights(model)
    assert any(not torch.equal(before[n], once[n]) for n in once)  # the first moved the weights
    round_trip(model, name)
    assert all(torch.equal(once[n], w) for n, w in weights(model).items())


@pytest.mark.parametrize("name", STEPS)
def test_an_edit_under_half_a_step_is_erased(name):
    generator = torch.Generator().manual_seed(0)
    grid = round_trip_rows(torch.randn(8, 64, generator=generator), name)
    edited = grid.clone()
    for row in range(grid.shape[0]):
        for start in range(0, grid.shape[1], 32):
            block = grid[row, start : start + 32]
            step = STEPS[name](block)
            inner = (block != block.max()) & (block != block.min())  # keep the block's range, so its scale
            shift = (torch.rand(32, generator=generator) - 0.5) * 0.6 * step  # |shift| < 0.3 step
            edited[row, start : start + 32] += torch.where(inner, shift, torch.zeros(32))
    assert not torch.equal(edited, grid)
    assert torch.equal(round_trip_rows(edited, name), grid)


def test_rows_that_are_not_whole_blocks_are_refused_or_skipped():
    with pytest.raises(ConfigError, match="multiple of 32"):
        round_trip_rows(torch.zeros(4, 40), "Q8_0")
    with pytest.raises(ConfigError, match="unknown quantization format 'Q3_K'"):
        round_trip_rows(torch.zeros(4, 32), "Q3_K")
    model = tiny.model("llama", width=48)  # 48-wide inputs: not whole blocks of 32
    result = round_trip(model, "Q8_0")
    assert result.skipped and all(linear_modules(model)[n].weight.shape[-1] % 32 for n in result.skipped)


def test_unlearning_held_on_a_grid_is_left_unchanged_by_its_round_trip():
    import cir.methods  # noqa: F401  (registers the methods)
    from cir.attacks.quantize import Config as QuantizeConfig
    from cir.attacks.quantize import Quantize
    from cir.methods.grad_diff import Config as GradDiffConfig
    from cir.unlearn import UnlearnConfig, UnlearnData, unlearn

    data = UnlearnData(list(tiny.FACTS), tiny.TEXTS[3:5], tiny.TEXTS[3:])
    train, evaluated = list(tiny.FACTS[:2]), list(tiny.FACTS[2:])
    scores = {}
    for quant_format in (None, "Q4_1"):
        config = UnlearnConfig(
            method="grad_diff",
            budget=1e9,
            max_epochs=3,
            batch_size=1,
            track_kl=False,
            quant_format=quant_format,
        )
        model = tiny.model("llama", layers=3)
        round_trip(model, "Q4_1")  # as if de-quantized from a Q4_1 GGUF file, like the built-in SmolLM2
        start = weights(model)
        unlearn(model, tiny.tokenizer(), data, config, GradDiffConfig(step_norm=0.05), progress=False)
        trained = {n: m.weight.detach().clone() for n, m in linear_modules(model).items() if "mlp" in n}
        attacked = Quantize(QuantizeConfig(formats=["Q4_1"])).run(
            model, tiny.tokenizer(), train, evaluated, False
        )
        scores[quant_format] = attacked.history
        if quant_format is not None:
            on_grid = tiny.model("llama", layers=3)
            round_trip(on_grid, "Q4_1")
            assert any(
                not torch.equal(trained[n], weights(on_grid)[n]) for n in trained
            )  # it moved off Q(W0)
            round_trip(model, "Q4_1")
            assert all(torch.equal(trained[n], weights(model)[n]) for n in trained)  # on the grid: fixed
        else:
            assert any(not torch.equal(start[n], trained[n]) for n in trained)
    assert scores["Q4_1"][1].facts == scores["Q4_1"][0].facts  # the round trip changes nothing
    assert scores[None][1].facts != scores[None][0].facts  # without the grid it does


def test_the_grid_needs_float32_weights():
    from cir.quant import GridWeights

    model = tiny.model("llama").to(torch.bfloat16)
    weights = [m.weight for n, m in linear_modules(model).items() if "mlp" in n]
    with pytest.raises(ConfigError, match="needs float32 trained weights"):
        GridWeights(model, weights, "Q4_1")


def test_torch_int8_is_quantize_dynamics_own_weights():
    from torch.ao.quantization import quantize_dynamic

    from cir.quant import TORCH_INT8, round_trip

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 16))
    reference = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)  # torch's own int8 model
    expected = reference[0].weight().dequantize()
    done = round_trip(model, TORCH_INT8)
    assert done.quantized == ["0"] and torch.equal(model[0].weight, expected)


def test_stored_types_find_a_tied_output_weight_under_the_embeddings_tensor(tmp_path):
    """As in the built-in SmolLM2 file: no output tensor, the head shares the (Q8_0) embedding."""
    import gguf
    import numpy as np
    from gguf.quants import quantize
    from transformers import LlamaConfig, LlamaForCausalLM

    from cir.quant import stored_types

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    writer = gguf.GGUFWriter(tmp_path / "tied.gguf", arch="llama")
    writer.add_block_count(1)
    embedding = np.zeros((64, 32), np.float32)
    writer.add_tensor(
        "token_embd.weight",
        quantize(embedding, gguf.GGMLQuantizationType.Q8_0),
        raw_dtype=gguf.GGMLQuantizationType.Q8_0,
    )
    for name, (rows, cols) in {
        "attn_q": (32, 32),
        "attn_k": (32, 32),
        "attn_v": (32, 32),
        "attn_output": (32, 32),
        "ffn_gate": (64, 32),
        "ffn_up": (64, 32),
        "ffn_down": (32, 64),
    }.items():
        writer.add_tensor(f"blk.0.{name}.weight", np.zeros((rows, cols), np.float32))
    for name in ("blk.0.attn_norm.weight", "blk.0.ffn_norm.weight", "output_norm.weight"):
        writer.add_tensor(name, np.ones(32, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    types = stored_types(model, gguf.GGUFReader(tmp_path / "tied.gguf"))
    assert types["lm_head"] == "Q8_0" and types["model.layers.0.mlp.down_proj"] == "F32"
    assert len(types) == 8  # seven linear layers of the block and the head
