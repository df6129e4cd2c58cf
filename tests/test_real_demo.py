"""`cir demo --model NAME` and `cir facts build` end to end on a fake built-in model.

The built-in model is the tiny GGUF of `gguf_tiny` (a 2-layer random Llama) in a fake wheel on
`sys.path`, run with SmolLM2's preset shrunk by overrides; the knowledge domains are sliced as in
`test_fact_sets.py`, and a random model "knows" a fact at a low threshold. SmolLM2 is never loaded.
"""

import functools
import json

import pytest
from safetensors.torch import load_file

import cir.fact_sets as fact_sets
import cir.inputs as inputs
import cir.pretrained as pretrained
import cir.real_demo as real_demo
from cir.cli import main
from cir.data.facts import load_facts
from cir.fact_sets import FactSetConfig, FactSetPaths
from cir.model_io import load_model
from cir.pretrained import CONVERSION_VERSION, BuiltinModel, file_sha256
from cir.stages import STAGES
from gguf_tiny import write_tiny_llama_gguf
from test_fact_sets import DOMAIN_NAMES, FILES, THRESHOLD, sliced

NAME = "tiny-builtin"
SHRINK = [  # SmolLM2's preset (30 layers) on 2 layers, one epoch each
    "unlearn.max_epochs=2",
    "unlearn.budget=100",
    "unlearn.track_kl=false",
    "method.forget_layers=[0]",
    "method.k_act=2",
    "method.k_grad=2",
    "attack.epochs=1",
]


@pytest.fixture
def builtin(tmp_path, monkeypatch):
    """`tiny-builtin`: the tiny GGUF in a fake wheel, with the smollm2_135m preset; sliced domains."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    site = tmp_path / "site" / "cir_fake_demo_wheel"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    gguf_file = write_tiny_llama_gguf(site / "tiny.gguf")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = BuiltinModel(
        package="cir_fake_demo_wheel",
        requirement="cir-fake-demo-wheel==0.1",
        filename="tiny.gguf",
        sha256=file_sha256(gguf_file),
        preset="smollm2_135m",
    )
    for module in (pretrained, inputs, real_demo):  # each binds the registry at import
        monkeypatch.setattr(module, "BUILTIN_MODELS", {NAME: spec})
    domains = {name: functools.partial(lambda n, seed: list(sliced(n, seed)), name) for name in DOMAIN_NAMES}
    monkeypatch.setattr(fact_sets, "DOMAINS", domains)
    low = functools.partial(FactSetConfig, known_threshold=THRESHOLD, general_heldout=20)
    monkeypatch.setattr(fact_sets, "FactSetConfig", low)  # the default config of `fact_sets_for`
    return spec


def test_demo_on_a_builtin_model_runs_end_to_end(builtin, tmp_path, capsys):
    out, cache = tmp_path / "demo", tmp_path / "cache"
    args = ["demo", "--model", NAME, "--device", "cpu", "--out", str(out), "--cache-dir", str(cache)]
    assert main([*args, *SHRINK]) == 0
    printed = capsys.readouterr().out

    written = {path.name for path in out.iterdir()}
    assert {"report.json", "report.md", "model.safetensors", "tokenizer.json"} <= written
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "cir" and report["attack"] == "finetune" and report["epochs"] == 2
    summary = json.loads((out / "summary.json").read_text())
    config = summary["config"]
    assert config["method"]["forget_layers"] == [0]  # the override
    assert config["unlearn"]["batch_size"] == 16 and config["method"]["k_act"] == 2  # preset, override
    facts = [folder for folder in cache.iterdir() if folder.name.startswith(f"facts-{NAME}-")]
    assert len(facts) == 1  # built once, for the demo and the run it starts
    paths = FactSetPaths.at(facts[0])
    train, val = load_facts(paths.forget_train), load_facts(paths.forget_val)
    assert summary["facts"] == min(len(train), 80) + min(len(val), 20)
    converted = cache / f"{NAME}-{builtin.sha256[:12]}-v{CONVERSION_VERSION}"
    model, _ = load_model(converted, device="cpu")
    assert load_file(out / "model.safetensors").keys() == dict(model.named_parameters()).keys()
    assert not (tmp_path / "xdg").exists()  # --cache-dir holds the conversion and the fact sets

    assert f"{NAME}: fact sets in {paths.folder}" in printed
    for domain in DOMAIN_NAMES:
        assert f"| {domain} | {len(sliced(domain, 0))} |" in printed  # the per-domain build table
    rows = [line for line in printed.splitlines() if line.startswith("| element_symbol |")]
    assert [row.split("|")[3].strip() for row in rows[1:]] == list(STAGES)  # after its build-table row
    assert "Greedy completions:" in printed and f"| prompt | {' | '.join(STAGES)} |" in printed
    assert printed.rstrip().endswith(f"output: {out}")


def test_demo_refuses_a_model_that_is_not_built_in(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    out = tmp_path / "demo"
    assert main(["demo", "--model", "gpt2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'gpt2' is not built in" in err and "smollm2-135m" in err
    assert not out.exists() and not (tmp_path / "xdg").exists()  # refused before any work


def test_facts_build_writes_the_folder_and_prints_each_domain(builtin, tmp_path, capsys):
    out = tmp_path / "facts"
    args = ["facts", "build", "--model", NAME, "--out", str(out), "--threshold", "0.01", "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    build = json.loads((out / "build.json").read_text())
    assert build["config"]["known_threshold"] == 0.01
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    for domain in DOMAIN_NAMES:
        scores = build["domains"][domain]
        assert f"| {domain} | {scores['facts']} | {scores['known']} | {scores['acc_t0']:.3f} |" in printed
    assert f"forget set: T {build['forget_T']}, V {build['forget_V']}" in printed
    assert build["forget_T"] + build["forget_V"] == build["domains"]["city_country"]["known"] >= 2
    assert printed.rstrip().endswith(f"output: {out}")
    assert main(args) == 2 and "--force" in capsys.readouterr().err  # the folder is not replaced silently
