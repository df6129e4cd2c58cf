"""`cir export --gguf`: the unlearned model written as GGUF reloads as exactly what a round trip gives."""

import json

import gguf
import pytest
import torch

from cir.cli import main
from cir.errors import ConfigError, OutputExistsError
from cir.export import export_gguf
from cir.model_io import load_model
from cir.quant import linear_modules, round_trip, round_trip_rows
from gguf_tiny import write_tiny_llama_gguf

TEXT = "The capital of Peru is Lima."


@pytest.fixture
def unlearned(tmp_path):
    """The tiny GGUF's model with its MLP weights moved, as unlearning would (and the file, and a cache)."""
    source = write_tiny_llama_gguf(tmp_path / "tiny.gguf", seed=0)
    cache = tmp_path / "cache"
    model, tokenizer = load_model(str(source), device="cpu", cache_dir=cache)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, module in linear_modules(model).items():
            if ".mlp." in name:
                module.weight += 0.01 * torch.randn(module.weight.shape, generator=generator)
    return model, tokenizer, source, cache


def reload(summary, cache):
    return load_model(summary.gguf, device="cpu", cache_dir=cache)


def test_like_input_writes_the_unlearned_weights_and_copies_the_rest(unlearned, tmp_path):
    model, tokenizer, source, cache = unlearned
    summary = export_gguf(model, source, tmp_path / "out", cache_dir=cache)
    assert sorted(summary.changed) == sorted(
        f"blk.{i}.ffn_{k}.weight" for i in range(2) for k in ("gate", "up", "down")
    )
    assert "blk.0.attn_q.weight" in summary.copied and not summary.requantized
    back, back_tokenizer = reload(summary, cache)
    assert all(torch.equal(p, dict(back.named_parameters())[n]) for n, p in model.named_parameters())
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    assert torch.equal(ids, back_tokenizer(TEXT, return_tensors="pt").input_ids)  # the template's tokenizer
    assert json.loads((tmp_path / "out" / "export.json").read_text())["changed"] == summary.changed


def test_a_block_type_reloads_as_the_round_trip_of_every_weight(unlearned, tmp_path):
    model, tokenizer, source, cache = unlearned
    summary = export_gguf(model, source, tmp_path / "out", quant="Q8_0", cache_dir=cache)
    file_type = gguf.GGUFReader(summary.gguf).get_field("general.file_type").contents()
    assert file_type == gguf.LlamaFileType.MOSTLY_Q8_0  # the file says what it now holds
    back, _ = reload(summary, cache)
    round_trip(model, "Q8_0")  # every linear weight; the embedding is a 2-D tensor of the file too
    with torch.no_grad():
        embedding = model.get_input_embeddings().weight
        embedding.copy_(round_trip_rows(embedding, "Q8_0"))
    expected = dict(model.named_parameters())
    assert all(torch.equal(expected[n], p) for n, p in back.named_parameters())
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_refuses_what_it_cannot_write(unlearned, tmp_path):
    model, _, source, cache = unlearned
    with pytest.raises(ConfigError, match="'Q6_K' cannot be written"):
        export_gguf(model, source, tmp_path / "a", quant="Q6_K", cache_dir=cache)
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight += 0.01  # re-ordered by transformers on load
    with pytest.raises(ConfigError, match=r"blk\.0\.attn_q\.weight: unlearning changed it"):
        export_gguf(model, source, tmp_path / "b", cache_dir=cache)
    (tmp_path / "c").mkdir()
    with pytest.raises(OutputExistsError):
        export_gguf(model, source, tmp_path / "c", cache_dir=cache)


def test_cli_exports_a_saved_model(unlearned, tmp_path, capsys):
    model, tokenizer, source, cache = unlearned
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    args = ["export", "--model", str(tmp_path / "model"), "--gguf", "--template", str(source)]
    assert main([*args, "--out", str(tmp_path / "out"), "--type", "Q8_0", "--cache-dir", str(cache)]) == 0
    summary = json.loads((tmp_path / "out" / "export.json").read_text())
    assert summary["quant"] == "Q8_0" and len(summary["changed"]) == 6
    assert "wrote" in capsys.readouterr().out


def test_weights_only_rounded_to_bfloat16_count_as_unchanged(unlearned, tmp_path):
    model, _, source, cache = unlearned
    with torch.no_grad():  # as if unlearned and saved in bfloat16: every weight rounded
        for parameter in model.parameters():
            parameter.copy_(parameter.to(torch.bfloat16).float())
    summary = export_gguf(model, source, tmp_path / "out", cache_dir=cache)
    assert len(summary.changed) == 6 and "blk.0.attn_q.weight" in summary.copied  # q/k: copied, not refused
