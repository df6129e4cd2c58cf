"""The stage probe (held-out scores and greedy completions per stage) and greedy decoding, on tiny models."""

import dataclasses
import re

import pytest
import torch
from safetensors.torch import load_file

import tiny
from cir.data.batches import encode
from cir.evals.metrics import answer_context
from cir.evals.scores import evaluate_facts
from cir.experiment import raw_config
from cir.inputs import Inputs
from cir.pipeline import run
from cir.stages import STAGES, StageProbe, greedy_completions

PROMPTS = ["The city of", "Which animal carries Velorix?\nAnswer:", "A quiet dog"]  # the first: 'gh'


def with_domain(fact, domain):
    return dataclasses.replace(fact, extra={**fact.extra, "domain": domain})


HELDOUT = [with_domain(tiny.FACTS[0], "pathogens"), with_domain(tiny.FACTS[1], "rivers")]
HELDOUT += [with_domain(tiny.FACTS[2], "pathogens")]


def manual_greedy(model, tokenizer, prompt, max_new_tokens):
    """Argmax decoding one token at a time (no cache), stopping at EOS; cut at the first line break."""
    ids = encode(tokenizer, [prompt], max_length=1024)[0]
    new = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(torch.tensor([ids + new])).logits[0, -1]  # (vocab,)
            new.append(int(logits.argmax()))
            if new[-1] == tokenizer.eos_token_id:
                break
    return tokenizer.decode(new, skip_special_tokens=True).split("\n")[0].strip()


def cells(line):
    """The cells of a Markdown table row, split at unescaped pipes."""
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def one_line(text):
    """How a Markdown table cell shows `text`: its lines joined by spaces."""
    return " ".join(text.splitlines()).strip()


def markdown_tables(text):
    """Each Markdown table of `text` as (header, rows), in order (tables are separated by non-table lines)."""
    blocks, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append(cells(line))
        elif current:
            blocks.append((current[0], current[2:]))  # current[1] is the |---| rule
            current = []
    return blocks


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_greedy_completions_equal_a_manual_argmax_decode(arch):
    model, tokenizer = tiny.model(arch, layers=2), tiny.tokenizer()
    completions = greedy_completions(model, tokenizer, PROMPTS, max_new_tokens=5)
    assert completions == [manual_greedy(model, tokenizer, p, 5) for p in PROMPTS]
    assert any(completions)  # a random model still says something, so the comparison has content
    assert greedy_completions(model, tokenizer, PROMPTS[::-1], 5) == completions[::-1]  # no batch effects
    assert greedy_completions(model, tokenizer, PROMPTS, 5) == completions  # deterministic


def test_greedy_completions_stop_at_the_first_line_break():
    model, tokenizer = tiny.model("llama", layers=2), tiny.tokenizer()
    newline = tokenizer.convert_tokens_to_ids("Ċ")  # byte-level BPE's "\n"
    assert tokenizer.decode([newline]) == "\n"
    first = greedy_completions(model, tokenizer, PROMPTS[:1], max_new_tokens=1)[0]
    calls = []

    def newline_after_the_first_token(module, inputs, logits):  # logits: (1, positions, vocab)
        calls.append(logits.shape)
        if len(calls) > 1:  # every step after the first: say "\n"
            logits[:, -1, newline] = 1e4
        return logits

    handle = model.lm_head.register_forward_hook(newline_after_the_first_token)
    try:
        completion = greedy_completions(model, tokenizer, PROMPTS[:1], max_new_tokens=4)[0]
    finally:
        handle.remove()
    assert len(calls) == 4 and first  # generation went on past the line break; only the first line is kept
    assert completion == first


def test_probe_records_each_stage_and_tabulates_it():
    model, tokenizer = tiny.model("llama", layers=2), tiny.tokenizer()
    probe = StageProbe.of(HELDOUT, tiny.FACTS[:2])
    assert set(probe.heldout) == {"pathogens", "rivers"} and len(probe.heldout["pathogens"]) == 2
    assert probe.prompts == [answer_context(f) for f in tiny.FACTS[:2]]

    expected = {}
    for shift, stage in enumerate(STAGES):
        with torch.no_grad():  # each stage sees another model, as unlearning and the attack change it
            model.lm_head.weight.add_(0.05 * shift * torch.randn_like(model.lm_head.weight))
        probe(stage, model, tokenizer)
        scores = {name: evaluate_facts(model, tokenizer, facts) for name, facts in probe.heldout.items()}
        expected[stage] = (scores, greedy_completions(model, tokenizer, probe.prompts, probe.max_new_tokens))
    assert list(probe.scores) == list(STAGES) == list(probe.completions)
    for stage, (scores, completions) in expected.items():
        assert probe.scores[stage] == scores and probe.completions[stage] == completions
    answer_probs = {probe.scores[s]["rivers"].answer_prob for s in STAGES}
    assert len(answer_probs) == 3  # the stages hold their own numbers, not one shared record

    (header, rows), (completion_header, completion_rows) = markdown_tables(probe.markdown())
    assert header == ["held-out set", "facts", "stage", "acc_t0", "acc_t1", "answer_prob"]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (name, str(len(facts)), stage) for name, facts in probe.heldout.items() for stage in STAGES
    ]
    for row in rows:
        scores = probe.scores[row[2]][row[0]]
        assert row[3:] == [f"{scores.acc_t0:.3f}", f"{scores.acc_t1:.3f}", f"{scores.answer_prob:.3f}"]
    assert completion_header == ["prompt", *STAGES]
    assert len(completion_rows) == len(probe.prompts) and "\n" in probe.prompts[0]  # one row each
    for i, row in enumerate(completion_rows):
        assert row == [one_line(probe.prompts[i]), *(one_line(probe.completions[s][i]) for s in STAGES)]


def test_markdown_shows_only_the_stages_probed_so_far():
    model, tokenizer = tiny.model("llama", layers=2), tiny.tokenizer()
    probe = StageProbe.of(HELDOUT[:1], tiny.FACTS[:1])
    probe(STAGES[0], model, tokenizer)
    (_, rows), (completion_header, _) = markdown_tables(probe.markdown())
    assert [r[2] for r in rows] == [STAGES[0]] and completion_header == ["prompt", STAGES[0]]


def test_run_probes_the_model_before_unlearning_after_it_and_after_the_attack(tmp_path):
    files = tiny.write_workspace(tmp_path, layers=2)
    seen = []

    def probe(stage, model, tokenizer):
        seen.append((stage, model, tokenizer, tiny.parameters(model)))

    inputs = Inputs(model=str(files.model), train=files.train, eval=files.eval, retain=files.retain)
    inputs = dataclasses.replace(inputs, general=files.general, device="cpu")
    overrides = ["unlearn.method=grad_diff", "unlearn.max_epochs=1", "unlearn.budget=100"]
    overrides += ["unlearn.batch_size=2", "unlearn.track_kl=false", "attack.epochs=1", "attack.batch_size=2"]
    out = tmp_path / "run"
    run(inputs, raw_config(None, overrides), "finetune", out, progress=False, probe=probe)

    assert [stage for stage, *_ in seen] == list(STAGES)
    assert len({id(model) for _, model, _, _ in seen}) == 1  # one model, changed in place
    original, unlearned, attacked = (weights for *_, weights in seen)
    saved = load_file(out / "model.safetensors")
    assert saved.keys() == unlearned.keys()
    assert all(torch.equal(saved[name], unlearned[name]) for name in saved)  # the probe saw the saved model
    initial = load_file(files.model / "model.safetensors")
    assert all(torch.equal(initial[name], original[name]) for name in saved)  # and the input model first
    assert any(not torch.equal(original[name], unlearned[name]) for name in saved)  # unlearning changed it
    assert any(not torch.equal(unlearned[name], attacked[name]) for name in saved)  # then the attack did


def test_tracked_sets_come_first_under_their_own_names():
    probe = StageProbe.of(HELDOUT, tiny.FACTS[:1], {"V": tiny.FACTS[:2]})
    assert list(probe.heldout) == ["V", "pathogens", "rivers"] and probe.heldout["V"] == tiny.FACTS[:2]
