"""The command line end to end on a tiny saved model: outputs, refusals and error messages."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tiny
from cir.cli import main, parse_args
from cir.data.batches import make_batches
from cir.data.facts import load_facts
from cir.evals.metrics import general_loss
from cir.evals.scores import evaluate_facts
from cir.model_io import load_model


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tiny.write_workspace(tmp_path_factory.mktemp("cli"))


def unlearn_args(files, out, *extra):
    return [
        "unlearn",
        *("--model", str(files.model), "--forget", str(files.train), str(files.eval)),
        *("--retain", str(files.retain), "--general", str(files.general)),
        *("--out", str(out), "--device", "cpu"),
        "unlearn.max_epochs=2",
        "unlearn.batch_size=2",
        "method.forget_layers=[1]",
        "method.k_act=1",
        "method.k_grad=1",
        *extra,
    ]


def attack_args(files, train, evaluate, out, *extra):
    return [
        *("attack", "--model", str(files.model), "--train", str(train), "--eval", str(evaluate)),
        *("--out", str(out), *extra),
    ]


def test_unlearn_writes_model_metrics_and_summary(workspace, capsys):
    out = workspace.root / "unlearned"
    assert main(unlearn_args(workspace, out)) == 0
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["epoch"] == 0 and len(metrics) >= 2
    assert set(metrics[1]) == {
        *("epoch", "train", "facts", "disruption", "seconds"),
        *("check_seconds", "step_scale", "rolled_back", "backoffs"),
    }
    assert set(metrics[1]["facts"]) == {"acc_t0", "acc_t1", "answer_prob", "recall_loss"}
    assert "forget_loss" in metrics[1]["train"] and metrics[0]["train"] == {}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threads"] == torch.get_num_threads() and summary["torch"] == torch.__version__
    assert summary["config"]["method"]["forget_layers"] == [1]
    assert summary["facts"] == 3 and summary["seconds_per_fact"] > 0
    assert {"stop_reason", "epochs", "peak_memory_bytes", "before", "after"} <= set(summary)
    assert summary["after"] == metrics[summary["epochs"]]
    assert "answer_prob" in capsys.readouterr().out
    # a second run into the same folder is refused, with the folder and --force named
    assert main(unlearn_args(workspace, out)) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*unlearn_args(workspace, out), "--force"]) == 0


def test_bad_config_key_names_the_key(workspace, capsys):
    assert main(unlearn_args(workspace, workspace.root / "bad", "method.k_atc=3")) == 2
    err = capsys.readouterr().err
    assert "k_atc" in err and "did you mean 'k_act'" in err
    assert not (workspace.root / "bad").exists()


def test_bad_fact_file_names_file_and_line(workspace, capsys):
    broken = workspace.root / "broken.jsonl"
    broken.write_text(workspace.train.read_text() + '{"question": "q", "choices": ["a"]}\n')
    args = unlearn_args(workspace, workspace.root / "never")
    args[args.index(str(workspace.train))] = str(broken)
    assert main(args) == 2
    assert f"{broken}:3" in capsys.readouterr().err


def test_never_overwrites_the_input_model(workspace, capsys):
    assert main([*unlearn_args(workspace, workspace.model), "--force"]) == 2
    assert "input model" in capsys.readouterr().err
    assert (workspace.model / "model.safetensors").is_file()


def test_run_writes_both_stages_and_report(workspace, capsys):
    out = workspace.root / "run"
    args = [a for a in unlearn_args(workspace, out) if a not in ("unlearn", "--forget")]
    args = [
        "run",
        "--train",
        str(workspace.train),
        "--eval",
        str(workspace.eval),
        *[a for a in args if a not in (str(workspace.train), str(workspace.eval))],
        "attack.epochs=2",
        "attack.batch_size=2",
    ]
    assert main(args) == 0
    for name in (
        "model.safetensors",
        "metrics.jsonl",
        "summary.json",
        "attack.jsonl",
        "attack_summary.json",
        "report.json",
        "report.md",
    ):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert set(report["v_post_attack"]) >= {"acc_t1", "answer_prob"}
    assert "post-attack" in (out / "report.md").read_text().lower()
    assert len((out / "attack.jsonl").read_text().splitlines()) == 3


def test_attack_command(workspace, capsys):
    out = workspace.root / "attacked"
    fast = ("--device", "cpu", "attack.epochs=1", "attack.batch_size=2")
    assert main(attack_args(workspace, workspace.train, workspace.eval, out, *fast)) == 0
    summary = json.loads((out / "attack_summary.json").read_text())
    assert summary["attack"] == "finetune" and "post_attack" in summary
    assert main(attack_args(workspace, workspace.train, workspace.train, workspace.root / "overlap")) == 2
    assert "overlap" in capsys.readouterr().err


def test_listing_commands(capsys):
    assert main(["methods"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("cir", "mlp_breaking", "grad_diff", "npo", "simnpo", "rmu"))
    assert main(["attacks"]) == 0
    assert "finetune" in capsys.readouterr().out


def test_unknown_preset_lists_presets(workspace, capsys):
    assert main([*unlearn_args(workspace, workspace.root / "x"), "--config", "nope"]) == 2
    assert "paper_llama8b" in capsys.readouterr().err


def test_device_map_auto_loads_through_accelerate_and_unlearns_the_same(workspace):
    # On a CPU-only machine accelerate places every layer on the CPU: the run must match the plain
    # one exactly, so the device_map path (hf_device_map, no .to()) changes nothing but placement.
    plain, mapped = workspace.root / "plain", workspace.root / "mapped"
    assert main(unlearn_args(workspace, plain)) == 0
    assert main([*unlearn_args(workspace, mapped), "--device-map", "auto"]) == 0
    weights = [load_file(out / "model.safetensors") for out in (plain, mapped)]
    original = load_file(workspace.model / "model.safetensors")
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert any(not torch.equal(weights[1][k], original[k]) for k in original)
    metrics = [(out / "metrics.jsonl").read_text().splitlines() for out in (plain, mapped)]
    untimed = [
        [{k: v for k, v in json.loads(line).items() if "second" not in k} for line in m] for m in metrics
    ]
    assert untimed[0] == untimed[1]


DEMO_BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "configs" / "demo_bench.yaml"

# One experiment file with every section: each command reads the sections it uses.
EXPERIMENT = """\
unlearn: {max_epochs: 2, batch_size: 2}
method: {k_act: 1, k_grad: 1}
methods: {cir: {k_act: 8}}
attack: {epochs: 1, batch_size: 2}
bench: {methods: [cir], budgets: [0.01], seeds: 1}
tune: {trials: 2, budget: 0.01, seed: 3}
"""


def every_command(files, config, out):
    """The five commands on `config`, each stopped after its config checks by a reason of its own.

    Returns (command line, the error the command ends with once its config is accepted).
    """
    model, common = ("--model", str(files.model)), ("--config", str(config), "--out", str(out))
    missing_facts = ("--facts", str(out / "none.jsonl"), "--general", str(files.general))
    return [
        (["unlearn", *model, "--forget", str(files.train), *common], "already exists"),
        (attack_args(files, files.train, files.eval, out, "--config", str(config)), "already exists"),
        (["run", *model, "--train", str(files.train), "--eval", str(files.eval), *common], "already exists"),
        (["bench", *model, *common], "already exists"),
        (
            ["tune", "--method", "cir", *model, *missing_facts, "--config", str(config)],
            "fact file not found",
        ),
    ]


def test_overrides_after_list_options_are_overrides(workspace, capsys):
    out = workspace.root / "exists"
    out.mkdir(exist_ok=True)
    line = ["bench", "--config", str(DEMO_BENCH), "--seeds", "1", "--budget", "0.01", "methods.cir.k_act=8"]
    args = parse_args([*line, "--out", str(out)])
    assert args.budget == [0.01] and args.seeds == 1 and args.overrides == ["methods.cir.k_act=8"]
    # the whole config is accepted: the command stops only at the existing output folder
    assert main([*line, "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    # and the override reaches methods.cir: a bad value there is named
    bad = ["bench", "--methods", "cir", "methods.cir.k_act=many", "--budget", "0.01", "--out", str(out)]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "methods.cir: method: k_act" in err and "already exists" not in err


def test_overrides_are_refused_by_commands_without_a_config():
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["eval", "unlearn.budget=0.1"])
    assert exit_info.value.code == 2


def test_one_experiment_file_is_accepted_by_every_command(workspace, capsys):
    config, out = workspace.root / "experiment.yaml", workspace.root / "taken"
    config.write_text(EXPERIMENT)
    out.mkdir(exist_ok=True)
    for line, reason in every_command(workspace, config, out):
        assert main(line) == 2, line[0]
        err = capsys.readouterr().err
        assert reason in err and "invalid config" not in err, (line[0], err)


def test_a_typo_in_a_section_name_is_an_error_with_a_did_you_mean(workspace, capsys):
    config = workspace.root / "typo-section.yaml"
    config.write_text(EXPERIMENT + "atack: {epochs: 3}\n")
    for line, _ in every_command(workspace, config, workspace.root / "never"):
        assert main(line) == 2, line[0]
        assert "unknown section 'atack' (did you mean 'attack'?)" in capsys.readouterr().err, line[0]


def test_a_bad_key_in_a_used_section_is_named(workspace, capsys):
    config = workspace.root / "typo-key.yaml"
    text = EXPERIMENT.replace("epochs: 1", "epochz: 1").replace("k_act: 1", "k_act: many")
    config.write_text(text.replace("trials: 2", "trails: 2"))
    out = workspace.root / "never"
    commands = {line[0]: line for line, _ in every_command(workspace, config, out)}
    assert main(commands["attack"]) == 2
    err = capsys.readouterr().err
    assert "attack: unknown key 'epochz' (did you mean 'epochs'?)" in err and "k_act" not in err
    assert main(commands["unlearn"]) == 2
    err = capsys.readouterr().err
    assert "method: k_act: expected int | None, got 'many'" in err and "epochz" not in err
    assert "trails" not in err
    assert main(commands["tune"]) == 2
    assert "tune: unknown key 'trails' (did you mean 'trials'?)" in capsys.readouterr().err
    assert not out.exists()


def bad_inputs(root):
    """(name, file to write or None, bytes or "dir", argument slot, fragment the error must hold)."""
    good_fact = (root / "good.jsonl").read_bytes().splitlines()[0] + b"\n"
    return [
        (
            "fact file not UTF-8",
            "latin1.jsonl",
            good_fact + b'{"question": "caf\xe9"}\n',
            "forget",
            ":2: not UTF-8",
        ),
        ("text file not UTF-8", "latin1.txt", b"plain\ncaf\xe9 au lait\n", "general", ":2: not UTF-8"),
        ("directory as fact file", "facts_dir", "dir", "forget", "is a directory"),
        ("directory as text file", "retain_dir", "dir", "retain", "is a directory"),
        ("unreadable fact file", "locked.jsonl", good_fact, "forget", "cannot read the fact file"),
        ("YAML not a mapping", "list.yaml", b"- unlearn\n- method\n", "config", "expected a mapping"),
        ("YAML not UTF-8", "latin1.yaml", b"unlearn:\n  budget: 0.01 # caf\xe9\n", "config", ":2: not UTF-8"),
        ("YAML not valid", "broken.yaml", b"unlearn: [budget\n", "config", "not valid YAML"),
        ("directory as config", "config_dir", "dir", "config", "is a directory"),
        ("unknown section", None, None, "override", "unknown section 'unlern'"),
    ]


@pytest.fixture
def no_model_loads(monkeypatch):
    """Bad input must be refused before any model is loaded: loading one fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr("cir.inputs.load_model", refuse)
    monkeypatch.setattr("cir.cli.load_model", refuse)


@pytest.mark.parametrize("case", range(10))
def test_bad_input_gives_one_error_line_naming_the_file_and_no_traceback(
    workspace, tmp_path, case, capsys, monkeypatch, no_model_loads
):
    (tmp_path / "good.jsonl").write_bytes(workspace.train.read_bytes())
    name, filename, content, slot, fragment = bad_inputs(tmp_path)[case]
    path = tmp_path / (filename or "unused")
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    if name == "unreadable fact file":  # chmod 000 does not stop root: refuse the read itself
        read_bytes = Path.read_bytes

        def locked(self):
            if self == path:
                raise PermissionError(13, "Permission denied")
            return read_bytes(self)

        monkeypatch.setattr(Path, "read_bytes", locked)
    out = tmp_path / "out"
    args = unlearn_args(workspace, out)
    if slot == "forget":
        args[args.index(str(workspace.train))] = str(path)
    elif slot in ("general", "retain"):
        args[args.index(str(getattr(workspace, slot)))] = str(path)
    elif slot == "config":
        args += ["--config", str(path)]
    else:
        args.append("unlern.budget=0.1")
    assert main(args) == 2, name
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("cir: error: ") and err.count("\n") == 1, err  # one line
    assert fragment in err, err
    if filename is not None:
        assert str(path) in err
    assert not out.exists()


def test_eval_and_attack_check_their_files_before_loading_a_model(
    workspace, tmp_path, capsys, no_model_loads
):
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes(b'{"question": "caf\xe9"}\n')
    assert main(["eval", "--model", str(workspace.model), "--facts", str(latin)]) == 2
    assert f"{latin}:1: not UTF-8" in capsys.readouterr().err
    out = tmp_path / "attacked"
    assert main(attack_args(workspace, latin, workspace.eval, out)) == 2
    assert f"{latin}:1: not UTF-8" in capsys.readouterr().err
    assert main(attack_args(workspace, workspace.train, workspace.train, out)) == 2
    assert "V overlaps T" in capsys.readouterr().err


def test_run_checks_the_attack_before_unlearning(workspace, tmp_path, capsys, no_model_loads):
    base = [
        *("run", "--model", str(workspace.model), "--retain", str(workspace.retain)),
        *("--general", str(workspace.general), "--out", str(tmp_path / "run")),
    ]
    overlap = [*base, "--train", str(workspace.facts), "--eval", str(workspace.eval)]
    assert main(overlap) == 2
    assert "V overlaps T" in capsys.readouterr().err
    too_many_shots = [*base, "--train", str(workspace.train), "--eval", str(workspace.eval)]
    assert main([*too_many_shots, "--attack", "few_shot", "attack.shots=3"]) == 2
    assert "attack.shots must be in 1..2" in capsys.readouterr().err
    assert main([*too_many_shots, "attack.lr=0"]) == 2
    assert "invalid config: attack.lr must be > 0, got 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_eval_and_attack_pass_the_device_map_to_the_loader(workspace, tmp_path, monkeypatch, capsys):
    import cir.cli
    import cir.inputs

    seen = []

    def spy(module):
        real = module.load_model

        def load(*args, **kwargs):
            seen.append(args[4] if len(args) > 4 else kwargs.get("device_map"))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, "load_model", load)

    spy(cir.cli)
    spy(cir.inputs)
    facts = ["--facts", str(workspace.eval)]
    assert main(["eval", "--model", str(workspace.model), *facts, "--device-map", "auto", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)[str(workspace.eval)]) == {
        "acc_t0",
        "acc_t1",
        "answer_prob",
        "recall_loss",
    }
    out = tmp_path / "attacked"
    fast = ("--device-map", "auto", "attack.epochs=1", "attack.batch_size=2")
    assert main(attack_args(workspace, workspace.train, workspace.eval, out, *fast)) == 0
    assert seen == ["auto", "auto"]


def test_eval_scores_each_file_in_both_formats_and_the_general_text(workspace, capsys):
    files = ["--facts", str(workspace.train), str(workspace.eval), "--general", str(workspace.general)]
    args = ["eval", "--model", str(workspace.model), *files, "--format", "both", "--device", "cpu"]
    assert main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    model, tokenizer = load_model(workspace.model, device="cpu")
    for path in (workspace.train, workspace.eval):
        for mcq_format in ("choice", "letter"):
            expected = evaluate_facts(model, tokenizer, load_facts(path), mcq_format).to_json()
            assert printed[f"{path} ({mcq_format})"] == pytest.approx(expected, abs=1e-6)
    texts = workspace.general.read_text().splitlines()
    expected_loss = general_loss(model, make_batches(tokenizer, texts, 64))
    assert printed[str(workspace.general)] == {"general_loss": pytest.approx(expected_loss, abs=1e-6)}
    assert len(printed) == 5

    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["file", "acc_t0", "acc_t1", "answer_prob", "general_loss", "recall_loss"]
    assert [line.split()[0] for line in lines[2:]] == [
        "T.jsonl",
        "T.jsonl",
        "V.jsonl",
        "V.jsonl",
        "general.txt",
    ]
    assert f"{expected_loss:.3f}" in lines[-1]


def test_summary_records_the_shape_rule_values_not_none(workspace):
    out = workspace.root / "ruled"
    left_to_the_rule = ("method.forget_layers=[1]", "method.k_act=1", "method.k_grad=1")
    assert main([a for a in unlearn_args(workspace, out) if a not in left_to_the_rule]) == 0
    method = json.loads((out / "summary.json").read_text())["config"]["method"]
    # a 3-layer, 32-wide model: the window at 20% of depth, 3/16 of the width
    assert method["forget_layers"] == [0, 1, 2] and (method["k_act"], method["k_grad"]) == (6, 6)


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "--facts", "{bad}"],
        ["unlearn", "--forget", "{bad}", "--out", "{out}"],
        ["run", "--train", "{bad}", "--eval", "{bad}", "--out", "{out}"],
        ["bench", "--facts", "{bad}", "--out", "{out}"],
        ["tune", "--method", "cir", "--facts", "{bad}"],
    ],
    ids=lambda c: c[0],
)
def test_a_bad_fact_file_is_named_before_the_demo_model_is_built(tmp_path, capsys, command):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 0, "sentences": ["S."]}\n{oops\n'
    )
    cache = tmp_path / "cache"
    args = [a.format(bad=bad, out=tmp_path / "out") for a in command]
    assert main([*args, "--cache-dir", str(cache)]) != 0
    assert f"{bad}:2" in capsys.readouterr().err
    assert not cache.exists()  # nothing was built


def test_threads_are_set_before_the_work_and_recorded(workspace, tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "unlearned"
    try:
        assert main([*unlearn_args(workspace, out), "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        assert json.loads((out / "summary.json").read_text())["threads"] == 1
        assert (
            main(["eval", "--model", str(workspace.model), "--facts", str(workspace.eval), "--threads", "0"])
            == 2
        )
    finally:
        torch.set_num_threads(threads)


def test_attack_scores_v_with_the_eval_probes_of_its_config(workspace):
    out = workspace.root / "probed"
    args = attack_args(
        workspace, workspace.train, workspace.eval, out, "attack.epochs=1", "eval.probes=[paraphrase]"
    )
    assert main(args) == 0
    history = [json.loads(line) for line in (out / "attack.jsonl").read_text().splitlines()]
    assert all("paraphrase_max_acc_t1" in entry["per_fact"] for entry in history)
    assert (
        main([*attack_args(workspace, workspace.train, workspace.eval, out, "eval.probes=[nope]"), "--force"])
        == 2
    )
