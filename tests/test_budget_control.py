"""The budget controller: checks inside the epoch, rollback to the exact in-budget weights, back-off,
and steps that do not grow with the number of facts."""

import json

import pytest
import torch

import cir.methods  # noqa: F401
import tiny
from cir.budget import BudgetPolicy
from cir.cli import main
from cir.data.batches import make_batches
from cir.evals.metrics import loss_and_kl
from cir.experiment import bench_configs
from cir.methods.grad_diff import Config, GradDiff
from cir.point import bench_jobs
from cir.unlearn import UnlearnConfig, UnlearnData, _Loop, unlearn

DATA = UnlearnData(list(tiny.FACTS), tiny.TEXTS[3:5], tiny.TEXTS[3:])  # 5 forget sentences


def ascent(step_norm):
    """Gradient ascent alone: every step raises the general loss (the retain term would lower it)."""
    return Config(step_norm=step_norm, retain_weight=0.0)


def loop_config(**changes):
    base = {"method": "grad_diff", "batch_size": 1, "track_kl": False, "check_texts": 2, "seed": 0}
    return UnlearnConfig(**{**base, **changes})


def trained(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "mlp" in n}


@pytest.fixture
def spy(monkeypatch):
    """Records the trained weights and the step before every step, and at every in-epoch check."""
    steps, checks = [], []
    step, check = GradDiff.step, _Loop._subset_within

    def spied_step(self, forget_index, retain_index, epoch):
        steps.append((epoch + 1, forget_index, trained(self.model), self.config.step_norm))
        return step(self, forget_index, retain_index, epoch)

    def spied_check(self, epoch, at, restored):
        weights = trained(self.method.model)
        passed = check(self, epoch, at, restored)
        checks.append((epoch, at, weights, passed))
        return passed

    monkeypatch.setattr(GradDiff, "step", spied_step)
    monkeypatch.setattr(_Loop, "_subset_within", spied_check)
    return steps, checks


def equal(a, b):
    return all(torch.equal(a[n], b[n]) for n in a)


def test_check_interval_in_steps_or_a_fraction_of_an_epoch():
    policy = lambda every: BudgetPolicy("general_loss", 0.01, every)  # noqa: E731
    assert policy(0.25).check_interval(48) == 12
    assert policy(0.25).check_interval(3) == 1  # at least one step
    assert policy(5).check_interval(48) == 5
    assert policy(0).check_interval(48) is None  # epoch ends only
    assert policy(0.99).check_interval(4) is None  # would land on the epoch's end, checked in full there


def test_a_breach_inside_an_epoch_rolls_back_bit_for_bit_and_halves_the_step(spy):
    steps, checks = spy
    config = loop_config(budget=0.005, max_epochs=3, check_every=1, max_backoffs=3, step_per="batch")
    model = tiny.model("llama", layers=3)
    result = unlearn(model, tiny.tokenizer(), DATA, config, ascent(1.0), progress=False)
    inside = [b for b in result.backoffs if b.check == "in_epoch"]
    assert inside, "the step is large enough to break the budget inside an epoch"
    verified = 0
    for epoch in {e for e, *_ in checks}:
        epoch_steps = [s for s in steps if s[0] == epoch]
        last_good = epoch_steps[0][2]  # the weights the epoch started from
        for _, at, weights, passed in (c for c in checks if c[0] == epoch):
            following = [s for s in epoch_steps if s[1] == at]
            if passed:
                last_good = weights
                continue
            if following:  # the epoch goes on: from the exact last weights that passed, half the step
                _, _, restored, step_norm = following[0]
                assert equal(restored, last_good)
                before = next(s for s in epoch_steps if s[1] == at - 1)[3]
                assert step_norm == pytest.approx(before * 0.5)
                verified += 1
    assert verified >= 1
    assert [b.step_scale for b in result.backoffs] == [0.5 ** (i + 1) for i in range(len(result.backoffs))]


def test_the_returned_model_is_never_over_budget():
    general = make_batches(tiny.tokenizer(), DATA.general_texts, 64, 128)
    for step_norm, budget in [(0.3, 0.003), (1.0, 0.005), (3.0, 0.01)]:
        config = loop_config(budget=budget, max_epochs=4, check_every=2, max_backoffs=2)
        model = tiny.model("llama", layers=3)
        result = unlearn(model, tiny.tokenizer(), DATA, config, ascent(step_norm), progress=False)
        loss, _ = loss_and_kl(result.model, general, None)
        assert loss == result.kept.disruption.general_loss  # the kept epoch's very weights
        assert loss <= result.budget.limit
        assert result.budget.within(result.kept)
        assert all(not result.budget.within(r) for r in result.history[result.epochs + 1 :])


def test_the_breach_after_the_last_back_off_stops_the_run():
    config = loop_config(budget=1e-4, max_epochs=10, check_every=1, max_backoffs=2, step_per="batch")
    model = tiny.model("llama", layers=3)
    result = unlearn(model, tiny.tokenizer(), DATA, config, ascent(2.0), progress=False)
    assert result.stop_reason == "budget" and len(result.backoffs) == 3
    assert result.history[-1].epoch < 10


def test_an_epoch_end_breach_rolls_back_to_the_last_kept_epoch_and_goes_on(spy):
    steps, _ = spy
    config = loop_config(budget=0.006, max_epochs=6, check_every=0, max_backoffs=4, step_per="batch")
    model = tiny.model("llama", layers=3)
    result = unlearn(model, tiny.tokenizer(), DATA, config, ascent(0.3), progress=False)
    rolled = [r for r in result.history if r.rolled_back]
    assert rolled, "some epoch's end leaves the budget"
    start = {e: w for e, i, w, _ in steps if i == 0}  # each epoch's starting weights
    for record in rolled:
        assert [b.check for b in record.backoffs] == ["epoch_end"]
        if record.epoch < result.history[-1].epoch:  # the next epoch starts from the last kept weights
            kept = max(r.epoch for r in result.history[: record.epoch] if not r.rolled_back)
            assert equal(start[record.epoch + 1], start[kept + 1])


def test_settings_carried_to_a_fact_set_of_another_size_move_the_weights_as_far_per_epoch(monkeypatch):
    moved = []
    step = GradDiff.step

    def measured_step(self, forget_index, retain_index, epoch):
        before = trained(self.model)
        logs = step(self, forget_index, retain_index, epoch)
        after = trained(self.model)
        moved.append(float(torch.sqrt(sum((after[n] - before[n]).pow(2).sum() for n in after))))
        return logs

    monkeypatch.setattr(GradDiff, "step", measured_step)
    totals = {}
    for step_per in ("epoch", "batch"):
        for copies in (1, 3):  # 5 and 15 forget batches an epoch
            data = UnlearnData(list(tiny.FACTS) * copies, DATA.retain_texts, DATA.general_texts)
            config = loop_config(
                budget=1e9, max_epochs=1, check_every=0, step_per=step_per, reference_batches=8
            )
            moved.clear()
            unlearn(tiny.model("llama", layers=3), tiny.tokenizer(), data, config, Config(step_norm=0.01))
            totals[step_per, copies] = (len(moved), sum(moved))
    assert totals["epoch", 1][0] == 5 and totals["epoch", 3][0] == 15
    assert totals["epoch", 1][1] == pytest.approx(0.01 * 8, rel=1e-3)  # step_norm x reference batches
    assert totals["epoch", 3][1] == pytest.approx(0.01 * 8, rel=1e-3)
    assert totals["batch", 3][1] == pytest.approx(3 * totals["batch", 1][1], rel=1e-3)  # the old meaning


def test_back_offs_are_written_to_metrics_and_summary(tmp_path):
    files = tiny.write_workspace(tmp_path)
    out = tmp_path / "unlearned"
    args = [
        *("unlearn", "--model", str(files.model), "--out", str(out), "--device", "cpu"),
        *("--forget", str(files.train), "--retain", str(files.retain), "--general", str(files.general)),
        *("unlearn.batch_size=2", "unlearn.max_epochs=4", "unlearn.track_kl=false", "unlearn.check_every=1"),
        *("unlearn.budget=0.002", "method.forget_layers=[1]", "method.k_act=1", "method.k_grad=1"),
        "method.step_norm=5.0",
    ]
    assert main(args) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    written = [b for m in metrics for b in m["backoffs"]]
    assert written and summary["backoffs"] == written
    assert set(written[0]) == {"epoch", "step", "check", "value", "limit", "restored_step", "step_scale"}
    assert all(b["value"] > b["limit"] for b in written)
    kept = metrics[summary["epochs"]]
    assert kept["disruption"]["general_loss"] <= summary["budget_limit"] and not kept["rolled_back"]
    assert summary["check_seconds"] > 0


def test_the_bench_runs_each_budget_separately_unless_one_trajectory_serves_all():
    raw = {"bench": {"methods": ["cir"], "budgets": [0.001, 0.01]}}
    bench, loop, _, overrides = bench_configs(raw)
    assert [budgets for _, budgets, _ in bench_jobs(bench, loop, overrides, {})] == [[0.001], [0.01]]
    bench, loop, _, overrides = bench_configs({**raw, "unlearn": dict(tiny.PAPER_LOOP)})
    assert [budgets for _, budgets, _ in bench_jobs(bench, loop, overrides, {})] == [[0.001, 0.01]]


def test_a_subset_breach_the_full_text_does_not_confirm_changes_nothing(monkeypatch):
    from cir.records import Disruption
    from cir.unlearn import _Probe

    confirmations = []
    full = _Probe.disruption

    def counted_full(self):
        confirmations.append(1)
        return full(self)

    calls = []
    # the subset's baseline as measured, then every in-epoch check far over it
    monkeypatch.setattr(
        _Probe,
        "subset_disruption",
        lambda self: Disruption(1.0 if not calls.append(1) and len(calls) == 1 else 1e12),
    )
    monkeypatch.setattr(_Probe, "disruption", counted_full)
    config = loop_config(budget=1e9, max_epochs=2, check_every=1, max_backoffs=1)
    result = unlearn(
        tiny.model("llama", layers=3), tiny.tokenizer(), DATA, config, ascent(0.1), progress=False
    )
    assert result.backoffs == [] and result.stop_reason == "max_epochs" and result.epochs == 2
    assert len(confirmations) == 1 + 2 * (1 + 4)  # before; per epoch 4 in-epoch confirmations + its end


def test_a_once_per_epoch_update_is_scaled_only_when_it_sums_over_batches():
    from cir.methods.repselect import Config as RepSelectConfig

    config = UnlearnConfig(reference_batches=16)
    assert config.data_scale(Config(), 32) == 0.5  # a step every batch
    assert config.data_scale(RepSelectConfig(), 32) == 0.5  # lr x the epoch's summed gradient
    assert config.data_scale(RepSelectConfig(step_norm=1.0), 32) == 1.0  # one normalised update an epoch
    assert UnlearnConfig(step_per="batch").data_scale(Config(), 32) == 1.0
