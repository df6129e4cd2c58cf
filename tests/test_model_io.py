import json

import pytest
import torch
from transformers import AutoModelForCausalLM

import tiny
from cir import outputs
from cir.errors import ModelError, OutputExistsError
from cir.model_io import load_model, save_model
from cir.outputs import atomic_output_dir, check_output_dir, write_json_atomic


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny Llama saved once for the whole module (saving is the slow part)."""
    model = tiny.model("llama")
    out = save_model(model, tiny.tokenizer(), tmp_path_factory.mktemp("saved") / "out")
    return model, out


def logits(model, text="Velorix spreads through airborne droplets."):
    ids = torch.tensor([tiny.tokenizer()(text)["input_ids"]])
    with torch.no_grad():
        return model(ids).logits


def hidden_entries(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_save_then_load_gives_the_same_logits(saved):
    model, out = saved
    loaded, tokenizer = load_model(out, device="cpu")
    assert not loaded.training
    assert next(loaded.parameters()).dtype == torch.float32
    torch.testing.assert_close(logits(loaded), logits(model), rtol=0, atol=1e-6)
    text = "The city of Amberfall is known for its river Selt."
    assert tokenizer(text)["input_ids"] == tiny.tokenizer()(text)["input_ids"]


def test_saved_folder_holds_safetensors_and_tokenizer_only(saved):
    _, out = saved
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in names)
    assert hidden_entries(out.parent) == []


def test_load_as_bfloat16(saved):
    _, out = saved
    loaded, _ = load_model(str(out), dtype="bfloat16")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}


def test_unknown_dtype_is_a_model_error(saved):
    _, out = saved
    with pytest.raises(ModelError, match=r"'fp8' is not supported; use one of float32, bfloat16, float16"):
        load_model(out, dtype="fp8")


def test_extra_files_and_nested_names(tmp_path):
    out = save_model(
        tiny.model("gpt2", layers=1),
        tiny.tokenizer(),
        tmp_path / "out",
        extra_files={"run.json": '{"seed": 1}', "logs/weights.bin": b"\x00\x01"},
    )
    assert json.loads((out / "run.json").read_text()) == {"seed": 1}
    assert (out / "logs" / "weights.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="relative path"):
        save_model(tiny.model("gpt2", layers=1), tiny.tokenizer(), tmp_path / "o2", extra_files={"../x": "y"})
    assert not (tmp_path / "o2").exists() and hidden_entries(tmp_path) == []


def test_second_save_needs_force(tmp_path):
    out = tmp_path / "out"
    first = tiny.model("llama", layers=1, seed=1)
    save_model(first, tiny.tokenizer(), out, extra_files={"marker.txt": "first"})
    second = tiny.model("llama", layers=1, seed=2)
    with pytest.raises(OutputExistsError, match=r"out already exists; pass --force"):
        save_model(second, tiny.tokenizer(), out)
    assert (out / "marker.txt").read_text() == "first"

    save_model(second, tiny.tokenizer(), out, force=True)
    assert not (out / "marker.txt").exists()
    reloaded, _ = load_model(out, device="cpu")
    torch.testing.assert_close(logits(reloaded), logits(second), rtol=0, atol=1e-6)
    assert hidden_entries(tmp_path) == []


def test_never_overwrites_the_input_model(saved, tmp_path):
    _, out = saved
    loaded, tokenizer = load_model(out, device="cpu")
    before = (out / "model.safetensors").read_bytes()
    with torch.no_grad():
        next(loaded.parameters()).add_(1.0)
    with pytest.raises(ModelError, match="input model folder"):
        save_model(loaded, tokenizer, out, force=True)
    with pytest.raises(ModelError, match="input model folder"):
        save_model(loaded, tokenizer, out.parent, force=True)  # replacing a parent would delete it too
    assert (out / "model.safetensors").read_bytes() == before
    save_model(loaded, tokenizer, tmp_path / "elsewhere")  # any other folder is fine


def test_a_model_built_from_config_protects_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # name_or_path "" must not resolve to the working directory
    model = tiny.model("llama", layers=1)
    assert model.name_or_path == ""
    assert save_model(model, tiny.tokenizer(), tmp_path / "out").is_dir()


def test_atomic_output_dir_writes_on_success(tmp_path):
    out = tmp_path / "deep" / "out"
    with atomic_output_dir(out) as staging:
        assert staging.parent == out.parent and staging != out
        assert not out.exists()
        (staging / "a.txt").write_text("a")
    assert (out / "a.txt").read_text() == "a"
    assert hidden_entries(out.parent) == []


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_output_dir_cleans_up_on_error(tmp_path, error):
    out = tmp_path / "out"
    with pytest.raises(type(error)), atomic_output_dir(out) as staging:
        (staging / "partial.txt").write_text("half")
        raise error
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_dir_keeps_old_content_when_forced_run_fails(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_output_dir(out, force=True) as staging:
        (staging / "new.txt").write_text("new")
        raise RuntimeError("interrupted")
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]

    with atomic_output_dir(out, force=True) as staging:
        (staging / "new.txt").write_text("new")
        assert (out / "old.txt").exists()  # replaced only once the new folder is complete
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_output_dir_checks_before_any_work(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    entered = []
    with pytest.raises(OutputExistsError, match="--force"), atomic_output_dir(out):
        entered.append(True)
    assert entered == []
    with pytest.raises(ModelError, match="input model folder"), atomic_output_dir(out, True, protected=[out]):
        entered.append(True)
    assert entered == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="not a folder"):
        check_output_dir(tmp_path / "file", force=True)
    check_output_dir(out, force=True, protected=[tmp_path / "other"])
    check_output_dir(out / "inside", protected=[out])  # writing inside the input folder replaces nothing


def test_load_model_folder_without_config(tmp_path):
    folder = tmp_path / "empty_model"
    folder.mkdir()
    with pytest.raises(ModelError, match=r"empty_model: no config\.json"):
        load_model(folder)


def test_load_model_folder_without_safetensors(saved, tmp_path):
    _, out = saved
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((out / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelError, match=r"pickled: no safetensors weights.*save_pretrained"):
        load_model(folder)


def test_load_model_missing_local_path(tmp_path):
    with pytest.raises(ModelError, match="no such folder"):
        load_model(tmp_path / "nope")
    with pytest.raises(ModelError, match="no such folder"):
        load_model("./runs/nope")


def test_load_model_offline_hub_id_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"cir-test/absent-model: .*HF_HUB_OFFLINE is set"):
        load_model("cir-test/absent-model")


def test_load_model_passes_safe_defaults(saved, monkeypatch):
    _, out = saved
    calls = []
    original = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    load_model(out, device="cpu")
    load_model(out, device="cpu", trust_remote_code=True, device_map="cpu")
    assert calls[0]["trust_remote_code"] is False
    assert calls[0]["use_safetensors"] is True
    assert calls[0]["dtype"] == "auto"
    assert "device_map" not in calls[0]
    assert calls[1]["trust_remote_code"] is True and calls[1]["device_map"] == "cpu"


def test_write_json_atomic(tmp_path):
    path = tmp_path / "sub" / "result.json"
    write_json_atomic(path, {"b": [1, 2], "a": "x"})
    assert json.loads(path.read_text()) == {"b": [1, 2], "a": "x"}
    assert path.read_text().startswith('{\n  "b"')
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"b": [1, 2], "a": "x"}
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_write_json_atomic_cleans_up_when_replace_fails(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    path.write_text("{}")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(outputs.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(path, [1])
    assert path.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
