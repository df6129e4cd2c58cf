"""The T/V relearning attack: it trains exactly what it claims, on every layer, and relearns."""

import contextlib
import copy
import threading

import pytest
import torch

import cir.attacks
import cir.methods  # noqa: F401  (registers the methods)
import tiny
from cir.attacks import relearn
from cir.attacks.base import POST_ATTACK_DEFINITION, post_attack, post_attack_scores, trailing_mean
from cir.attacks.finetune import Config, Finetune
from cir.data.batches import make_batches
from cir.errors import ConfigError, DataError, ModelError
from cir.hooks import forward
from cir.losses import cross_entropy
from cir.methods.cir import Config as CIRConfig
from cir.modules import decoder_layers, mlp_modules
from cir.records import AttackEpoch, FactScores
from cir.registry import METHODS
from cir.unlearn import UnlearnConfig, UnlearnData, unlearn

TRAIN, EVAL = list(tiny.FACTS[:2]), list(tiny.FACTS[2:])


def attack(model, train=TRAIN, evaluated=EVAL, **overrides):
    config = Config(**{"epochs": 3, "batch_size": 2, "lr": 1e-2, **overrides})
    return Finetune(config).run(model, tiny.tokenizer(), train, evaluated, progress=False)


def weights(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed(before, model):
    return {name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())}


def mlp_weight_names(model):
    return {f"{m.name}.weight" for m in mlp_modules(model)}


@pytest.mark.parametrize(
    ("arch", "trained", "expected_count"),
    [("llama", "mlp", 12), ("gpt2", "mlp", 8), ("llama", "all", None)],
)
def test_every_claimed_parameter_changes_and_nothing_else(arch, trained, expected_count):
    model = tiny.model(arch)
    before = weights(model)
    result = attack(model, trained=trained)
    claimed = mlp_weight_names(model) if trained == "mlp" else set(before)
    assert len(claimed) == (expected_count or len(before))
    assert changed(before, model) == claimed  # the others are bitwise equal
    assert set(result.trained_parameters) == claimed
    assert set(result.changes.changed_parameters) == claimed
    assert result.changes.unchanged_claimed == [] and result.changes.changed_unclaimed == []


def test_attack_right_after_cir_unlearning_trains_every_layer():
    model = tiny.model("llama", layers=4)
    data = UnlearnData(list(tiny.FACTS), tiny.TEXTS[3:5], tiny.TEXTS[3:])
    config = UnlearnConfig(method="cir", budget=1e9, max_epochs=2, batch_size=2, track_kl=False)
    # the forward pass is trimmed after layer 2 during unlearning: layer 3 gets no update there
    unlearn(model, tiny.tokenizer(), data, config, CIRConfig(forget_layers=[1, 2], k_act=2, k_grad=2))
    before = weights(model)
    result = attack(model)
    assert {m.layer for m in mlp_modules(model)} == {0, 1, 2, 3}
    assert changed(before, model) == mlp_weight_names(model)
    assert all(
        f"model.layers.3.mlp.{n}.weight" in result.changes.changed_parameters
        for n in ("gate_proj", "up_proj", "down_proj")
    )


def test_refuses_a_trimmed_or_hooked_model():
    hooked = tiny.model("llama")
    handle = decoder_layers(hooked)[1].register_forward_hook(lambda *args: None)
    with pytest.raises(ModelError, match=r"decoder layer\(s\) \[1\] carry forward hooks"):
        attack(hooked)
    handle.remove()
    trimmed = tiny.model("llama")
    trimmed.model.layers = trimmed.model.layers[:2]
    with pytest.raises(ModelError, match="has 2 decoder layers but its config says 4"):
        attack(trimmed)


def test_train_eval_overlap_is_refused():
    with pytest.raises(DataError, match="V overlaps T"):
        attack(tiny.model("llama"), train=list(tiny.FACTS), evaluated=EVAL)
    with pytest.raises(DataError, match="no eval"):
        attack(tiny.model("llama"), evaluated=[])


def test_bad_settings_are_named_together_when_the_config_is_built():
    with pytest.raises(ConfigError, match=r"attack\.lr must be > 0.*\n.*attack\.window must be >= 1"):
        Config(lr=0.0, window=0)
    with pytest.raises(ConfigError, match=r"invalid config: attack\.mcq_format must be one of"):
        Config(mcq_format="both")


def test_train_facts_attacks_with_the_first_facts_of_t_only():
    """`train_facts=1` is the attack on T's first fact: the same training as passing that fact alone."""
    capped = attack(tiny.model("llama"), train_facts=1)
    alone = attack(tiny.model("llama"), train=TRAIN[:1])
    whole = attack(tiny.model("llama"))
    assert [(e.facts, e.train_loss) for e in capped.history] == [
        (e.facts, e.train_loss) for e in alone.history
    ]
    assert [(e.facts, e.train_loss) for e in capped.history] != [
        (e.facts, e.train_loss) for e in whole.history
    ]
    with pytest.raises(ConfigError, match=r"attack\.train_facts must be >= 1 or null"):
        Config(train_facts=0)


def test_history_has_one_entry_per_epoch_plus_before():
    model = tiny.model("llama")
    result = attack(model, epochs=4, mcq_format="letter")
    assert len(result.history) == 5 and [h.epoch for h in result.history] == [0, 1, 2, 3, 4]
    assert set(result.history[0].to_json()) == {"epoch", "facts", "train_loss", "seconds", "per_fact"}
    for entry in result.history:  # the per-fact scores are the facts' own and average to the epoch's
        assert entry.per_fact is not None and len(entry.per_fact) == len(EVAL)
        assert entry.per_fact.means() == entry.facts
    assert result.history[0].seconds == 0.0 and result.history[-1].seconds > 0
    assert result.history[-1].train_loss < result.history[0].train_loss
    # entry 0's train loss is the mean batch loss of T's sentences before any step
    fresh, batches = (
        tiny.model("llama"),
        make_batches(tiny.tokenizer(), [s for f in TRAIN for s in f.sentences], 2),
    )
    with torch.no_grad():
        losses = [float(cross_entropy(forward(fresh, b), b.input_ids, b.attention_mask)) for b in batches]
    assert result.history[0].train_loss == pytest.approx(sum(losses) / len(losses), rel=1e-5)
    assert result.post_attack_definition == POST_ATTACK_DEFINITION.format(window=3)
    assert result.post_attack == post_attack_scores(result.history, 3)
    assert result.before == result.history[0].facts and result.final == result.history[-1].facts
    assert result.stop_reason == "epochs"


def test_post_attack_is_the_best_trailing_mean_by_hand():
    values = [0.30, 0.50, 0.20, 0.90, 0.40, 0.10]
    # window 3: 0.30, 0.40, 0.3333, 0.5333, 0.5000, 0.4667
    assert trailing_mean(values, 3) == pytest.approx([0.30, 0.40, 1.0 / 3, 1.6 / 3, 0.5, 1.4 / 3])
    assert post_attack(values, 3) == pytest.approx(1.6 / 3)
    assert post_attack(values, 1) == pytest.approx(0.90)
    assert post_attack(values, 10) == pytest.approx(0.475)  # running mean 1.9 / 4
    losses = [1 - v for v in values]
    assert post_attack(losses, 3, higher_is_better=False) == pytest.approx(1 - 1.6 / 3)
    history = [AttackEpoch(i, FactScores(v / 2, v, v / 3, 1 - v)) for i, v in enumerate(values)]
    best = post_attack_scores(history, 3)
    assert best.acc_t1 == pytest.approx(1.6 / 3) and best.acc_t0 == pytest.approx(0.8 / 3)
    assert best.recall_loss == pytest.approx(1 - 1.6 / 3)  # the min: lower is better
    with pytest.raises(ConfigError, match="window must be at least 1"):
        post_attack(values, 0)
    with pytest.raises(ConfigError, match="history is empty"):
        post_attack([], 3)


def test_same_seed_same_history_other_seed_other_order():
    def strip(result):
        return [(h.epoch, h.facts, h.train_loss) for h in result.history]

    first, second = attack(tiny.model("llama"), seed=3), attack(tiny.model("llama"), seed=3)
    assert strip(first) == strip(second)
    assert strip(attack(tiny.model("llama"), seed=4)) != strip(first)


def test_interrupt_stops_after_the_current_epoch_and_restores_the_model(monkeypatch):
    @contextlib.contextmanager
    def pressed():
        flag = threading.Event()
        flag.set()  # as if Ctrl-C came during epoch 1
        yield flag

    monkeypatch.setattr(relearn, "interrupt_flag", pressed)
    model = tiny.model("llama").train()
    model.lm_head.weight.requires_grad_(False)
    result = attack(model, epochs=5)
    assert result.stop_reason == "interrupted" and len(result.history) == 2
    assert model.training and all(m.training for m in model.modules())
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == ["lm_head.weight"]
    assert all(p.grad is None for p in model.parameters())


def test_claimed_parameter_that_does_not_move_is_reported():
    model = tiny.model("llama")
    with pytest.warns(RuntimeWarning, match="12 claimed parameter\\(s\\) did not change"):
        result = attack(model, optimizer="sgd", lr=1e-30, epochs=1)
    assert set(result.changes.unchanged_claimed) == mlp_weight_names(model)


@pytest.fixture(scope="module")
def knowing_model():
    """A tiny Llama pretrained until it recalls all three facts (about 100 AdamW steps, a few seconds)."""
    torch.manual_seed(0)
    texts = tiny.TEXTS + [s for f in tiny.FACTS for s in f.sentences]
    texts += [f"{f.question}\nAnswer: {f.answer_text}" for f in tiny.FACTS]
    model = tiny.model("llama", layers=4, width=32)
    (batch,) = make_batches(tiny.tokenizer(), texts, batch_size=len(texts))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(100):
        cross_entropy(forward(model, batch), batch.input_ids, batch.attention_mask).backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


# The Velorix fact is V; the other two are T (disjoint: no shared question or sentence).
PROTOCOL_TRAIN, PROTOCOL_EVAL = list(tiny.FACTS[1:]), list(tiny.FACTS[:1])


def protocol_attack(model):
    return attack(model, PROTOCOL_TRAIN, PROTOCOL_EVAL, epochs=8, lr=3e-3)


def test_protocol_attack_does_not_erase_what_an_intact_model_knows(knowing_model):
    result = protocol_attack(copy.deepcopy(knowing_model))
    before = result.before.answer_prob
    assert before > 0.8  # the model knows V
    # across model seeds 0..2 the largest fall seen was 0.07 (0.93 -> 0.86)
    assert min(h.facts.answer_prob for h in result.history) > before - 0.1


def test_protocol_attack_recovers_a_fact_unlearned_by_grad_diff(knowing_model):
    assert "grad_diff" in METHODS.names()
    from cir.methods.grad_diff import Config as GradDiffConfig

    model = copy.deepcopy(knowing_model)
    data = UnlearnData(PROTOCOL_EVAL, tiny.TEXTS[3:5], tiny.TEXTS[3:5])
    config = UnlearnConfig(method="grad_diff", budget=1e9, max_epochs=3, track_kl=False, **tiny.PAPER_LOOP)
    unlearned = unlearn(model, tiny.tokenizer(), data, config, GradDiffConfig(step_norm=1.0), progress=False)
    forgotten = unlearned.history[-1].facts.answer_prob
    assert forgotten < unlearned.history.before.facts.answer_prob - 0.3  # 0.94 -> 0.10 at seed 0
    result = protocol_attack(model)
    assert result.before.answer_prob == pytest.approx(forgotten, rel=1e-4)
    # seed 0: 0.10 -> 0.26; model seeds 1 and 2 gave +0.21 and +0.38
    assert result.post_attack.answer_prob > forgotten + 0.1
