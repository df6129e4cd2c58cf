"""Typed results: fact scores, the unlearning history, an attack's outcome, a run's and a bench's report.

Code reads these fields; files hold their `to_json()` form. The JSON key names, documented here once:

- **FactScores** `{"acc_t0", "acc_t1", "answer_prob", "recall_loss"}`: acc_t0 = argmax MCQ accuracy,
  acc_t1 = mean renormalised probability of the right choice, answer_prob = mean over facts of
  exp(-mean cross-entropy of the answer tokens after the question), recall_loss = mean of that
  cross-entropy in nats (lower = better recalled).
- **Disruption** `{"general_loss", "kl"}`: held-out general-text loss (nats per token) and KL(original
  || current) in nats per token; kl is null when not tracked.
- **EpochRecord**, a line of `metrics.jsonl` and summary.json's `before`/`after`: `{"epoch", "train",
  "facts", "disruption", "seconds", "check_seconds", "step_scale", "rolled_back", "backoffs"}`; epoch
  0 = before unlearning; train = the method's own mean step logs of the epoch (e.g. forget_loss,
  retain_loss; empty at epoch 0); facts and disruption: measured on the epoch's end weights, or, if
  they left the budget and an in-epoch checkpoint had passed a check, on that checkpoint's weights;
  seconds = unlearning wall time so far (setup, steps, budget checks), check_seconds = the part of it
  spent on budget checks; step_scale = the factor on the method's step at the epoch's end (data size
  x back-offs); rolled_back = the epoch's end weights left the budget (the run went on from an
  in-epoch checkpoint if the record is within the budget, else from the last kept epoch); backoffs =
  the epoch's BackOff records. The kept epoch is the last record within the budget.
- **BackOff**, in an EpochRecord's `backoffs` and summary.json's `backoffs`: `{"epoch", "step",
  "check", "value", "limit", "restored_step", "step_scale"}`; a budget breach found after `step`
  steps of `epoch` (1-based) by the `check` ("in_epoch": the subset check fired and the full budget
  text confirmed it; "epoch_end": the full check at the epoch's end), the budget metric's `value` on
  the full budget text against its `limit`, the step of the epoch whose weights the run went back to
  (0: the epoch's start, which is the last kept epoch's end), and the step scale the run goes on with
  (the breach after the last allowed back-off ends the run: its step_scale is never used).
- **UnlearnSummary**, `summary.json` of `cir unlearn` and `cir run`: `{"config", "seed", "stop_reason",
  "epochs", "budget_limit", "data_scale", "backoffs", "unlearn_seconds", "check_seconds",
  "seconds_per_fact", "facts", "peak_memory_bytes", "device", "threads", "torch", "before",
  "after"}`; config = `{"unlearn", "method"}` as run; threads = torch's intra-op threads (CPU
  results repeat bit for bit only at the same count); torch = its version; before/after =
  EpochRecords before unlearning and at the kept epoch.
- **AttackEpoch**, a line of `attack.jsonl`: `{"epoch", "facts", "train_loss", "seconds"}`; facts =
  FactScores of the eval facts (V); epoch 0 = before the attack (few_shot: 0 = the 0-shot prompt,
  1 = the k-shot one); train_loss null where nothing trains.
- **AttackResult**, `attack_summary.json`: `{"before", "final", "post_attack"}` (FactScores of V),
  `"post_attack_definition"`, `"stop_reason"`, `"seconds"`, `"trained_parameters"`, `"config"`,
  `"changes"` (`{"changed_parameters", "unchanged_claimed", "changed_unclaimed"}`, or null) and
  `"details"` (what one attack adds, e.g. lora's target_modules).
- **RunReport**, `report.json` of `cir run`: `{"method", "attack", "post_attack_definition",
  "v_after_unlearning", "v_post_attack", "forget_before", "forget_after"}` (the last four FactScores),
  `"general_loss_before"`, `"general_loss_after"`, `"epochs"`, `"stop_reason"`, `"seconds_per_fact"`.
- **BenchRun**, an entry of results.json's `runs`: `{"method", "seed", "budget", "epochs"}`,
  `"v_before"`, `"v_unlearned"`, `"v_post_attack"` (FactScores of V: the means of its per-fact
  records), `"general_loss_before"`, `"general_loss_after"`, `"seconds_per_fact"`,
  `"unlearn_trajectory"` (`[{"epoch", "general_loss", "v"}]`), `"attack_trajectory"` (`[{"epoch",
  "v"}]`, the chosen lr's), `"post_attack_definition"`, `"stop_reasons"` (`{"unlearn", "attack"}`),
  `"heldout_before"`, `"heldout_unlearned"`, `"fold"`, `"attack_lr"` (the sweep's chosen lr, null
  without a sweep), `"attack_epochs"` (metric -> the epoch of its post-attack value) and `"per_fact"`.
- **FactRecord**, an entry of `per_fact`: `{"fact", "split", "answer", "stage", "scores"}`; fact =
  "forget:<index in the forget file>" or "heldout:<index>"; split = "T", "V" or the held-out domain;
  stage = "before", "unlearned", "attack epoch <e>" (or "attack lr=<lr> epoch <e>" in a sweep) or
  "post_attack" (the fact's smoothed value at the epoch the attacker's best mean is at); scores = every
  fact metric and every extra probe's column.
- **ControlRun**, an entry of results.json's `controls` (the same attack on the never-unlearned
  model): `{"seed", "fold", "v_before", "v_post_attack", "attack_lr", "attack_epoch",
  "attack_trajectory", "stop_reason", "per_fact"}`.
- **FactTable** (`AttackEpoch.per_fact`, attack.jsonl's `per_fact`): `{metric: [value per fact]}`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, overload

from cir.errors import ConfigError

FactMetric = Literal["acc_t0", "acc_t1", "answer_prob", "recall_loss"]
FACT_METRICS: tuple[str, ...] = get_args(FactMetric)
LOWER_IS_BETTER = frozenset({"recall_loss"})  # metrics whose best value (e.g. the attacker's) is the min
DisruptionMetric = Literal["general_loss", "kl"]


@dataclass(frozen=True)
class FactScores:
    """How well a model knows a set of facts (`cir.evals.scores.evaluate_facts`)."""

    acc_t0: float  # argmax MCQ accuracy, chance 0.25
    acc_t1: float  # mean renormalised probability of the right choice (the headline), chance 0.25
    answer_prob: float  # mean exp(-CE of the answer tokens after the question), in [0, 1]
    recall_loss: float  # mean CE of the answer tokens, nats

    def metric(self, name: str) -> float:
        """The value of metric `name` (one of FACT_METRICS).

        Raises:
            ConfigError: for an unknown name, listing the known ones.
        """
        if name not in FACT_METRICS:
            raise ConfigError(f"unknown fact metric {name!r}; known: {', '.join(FACT_METRICS)}")
        return getattr(self, name)

    def to_json(self) -> dict[str, float]:
        """`{"acc_t0", "acc_t1", "answer_prob", "recall_loss"}`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FactScores:
        """Read `to_json`'s form back."""
        return cls(**{name: float(data[name]) for name in FACT_METRICS})


POST_ATTACK = "post_attack"  # the stage of the bench attack's post-attack records


def post_attack_stage(attack: str | None = None) -> str:
    """The stage name of post-attack records: the bench's attack's, or an extra attack's."""
    return POST_ATTACK if attack is None else f"{POST_ATTACK}:{attack}"


@dataclass(frozen=True)
class FactTable:
    """Every fact metric of each fact of a set, in fact order: the per-fact form of `FactScores`.

    Kept so that statistics over facts (paired differences, bootstrap intervals) and re-scoring can
    be computed from the stored numbers instead of a rerun.
    """

    values: dict[str, tuple[float, ...]]  # metric (FACT_METRICS, then extra probes') -> one value per fact

    def __post_init__(self) -> None:
        lengths = {len(column) for column in self.values.values()}
        if not set(FACT_METRICS) <= set(self.values) or len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"a FactTable needs every metric of {FACT_METRICS} for the same facts")

    def __len__(self) -> int:
        return len(self.values[FACT_METRICS[0]])

    def means(self) -> FactScores:
        """The mean of each `FactScores` metric over the facts."""
        return FactScores(**{name: self.mean(name) for name in FACT_METRICS})

    def mean(self, name: str) -> float:
        """The mean of one column (a `FactScores` metric or an extra probe's) over the facts."""
        column = self.values[name]
        return math.fsum(column) / len(column)

    def row(self, index: int) -> dict[str, float]:
        """Fact `index`'s value of every metric."""
        return {name: column[index] for name, column in self.values.items()}

    def subset(self, indices: Sequence[int]) -> FactTable:
        """The table of the facts at `indices`, in that order."""
        return FactTable({name: tuple(column[i] for i in indices) for name, column in self.values.items()})

    def to_json(self) -> dict[str, list[float]]:
        """`{metric: [value per fact]}`."""
        return {name: list(column) for name, column in self.values.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[float]]) -> FactTable:
        """Read `to_json`'s form back."""
        return cls({name: tuple(float(v) for v in column) for name, column in data.items()})


@dataclass(frozen=True)
class FactRecord:
    """One fact's scores at one stage of a bench run: the unit every statistic is computed from."""

    fact: str  # the fact's id: "<file role>:<line index>", e.g. "forget:12"
    split: str  # "T", "V", or the held-out domain (selectivity)
    answer: str  # the right choice's text
    stage: str  # "before", "unlearned", "attack lr=3e-05 epoch 2", "post_attack"
    scores: dict[str, float]  # every fact metric

    def to_json(self) -> dict[str, Any]:
        """`{"fact", "split", "answer", "stage", "scores"}`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FactRecord:
        """Read `to_json`'s form back."""
        return cls(data["fact"], data["split"], data["answer"], data["stage"], dict(data["scores"]))


@dataclass(frozen=True)
class Disruption:
    """How far general ability moved: what the disruption budget bounds."""

    general_loss: float  # mean next-token CE on held-out general text, nats per token
    kl: float | None = None  # KL(original || current) on that text, nats per token; None = not tracked

    def value(self, metric: DisruptionMetric) -> float:
        """The value the budget of `metric` bounds.

        Raises:
            ConfigError: if `metric` is "kl" and the KL was not tracked.
        """
        if metric == "kl":
            if self.kl is None:
                raise ConfigError("the budget metric is kl but the KL was not measured")
            return self.kl
        return self.general_loss


@dataclass(frozen=True)
class BackOff:
    """A budget breach: in-budget weights restored and the step shrunk (or, with no back-off left, a stop)."""

    epoch: int  # the epoch (1-based, as in EpochRecord) the breach was found in
    step: int  # steps of that epoch done when it was found
    check: Literal["in_epoch", "epoch_end"]  # found inside the epoch (subset, then confirmed), or at its end
    value: float  # the budget metric on the full budget text
    limit: float  # the largest value the budget allows
    restored_step: int  # the step of `epoch` whose weights the run went back to (0: the epoch's start)
    step_scale: float  # the factor on the method's step from here on

    def to_json(self) -> dict[str, Any]:
        """`{"epoch", "step", "check", "value", "limit", "step_scale"}`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackOff:
        """Read `to_json`'s form back."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class EpochRecord:
    """The unlearning loop's measurement after one epoch (epoch 0: before unlearning)."""

    epoch: int
    facts: FactScores  # the monitored facts (the forget facts, unless others were given)
    disruption: Disruption
    train: dict[str, float] = field(default_factory=dict)  # the method's mean step logs of the epoch
    seconds: float = 0.0  # cumulative unlearning wall time: setup, steps and budget checks
    check_seconds: float = 0.0  # the part of `seconds` spent measuring the disruption (budget checks)
    step_scale: float = 1.0  # the factor on the method's step at the epoch's end
    rolled_back: bool = False  # the epoch's end left the budget: in-budget weights replaced them
    backoffs: tuple[BackOff, ...] = ()  # breaches found during the epoch, in order

    def to_json(self) -> dict[str, Any]:
        """The JSON form (its keys in the module docstring)."""
        return {
            "epoch": self.epoch,
            "train": dict(self.train),
            "facts": self.facts.to_json(),
            "disruption": dataclasses.asdict(self.disruption),
            "seconds": self.seconds,
            "check_seconds": self.check_seconds,
            "step_scale": self.step_scale,
            "rolled_back": self.rolled_back,
            "backoffs": [b.to_json() for b in self.backoffs],
        }


class UnlearnHistory(Sequence[EpochRecord]):
    """The unlearning run's records in epoch order: entry e is the measurement after epoch e."""

    def __init__(self, records: Sequence[EpochRecord] = ()) -> None:
        self.records = list(records)

    @overload
    def __getitem__(self, index: int) -> EpochRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[EpochRecord]: ...

    def __getitem__(self, index: int | slice) -> EpochRecord | list[EpochRecord]:
        return self.records[index]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[EpochRecord]:
        return iter(self.records)

    def append(self, record: EpochRecord) -> None:
        """Add the next epoch's record."""
        self.records.append(record)

    @property
    def before(self) -> EpochRecord:
        """Entry 0: the model before unlearning."""
        return self.records[0]

    def to_json(self) -> list[dict[str, Any]]:
        """One EpochRecord object per epoch (the lines of metrics.jsonl)."""
        return [record.to_json() for record in self.records]


@dataclass(frozen=True)
class UnlearnSummary:
    """What one unlearning run did and cost (`summary.json`)."""

    config: dict[str, Any]  # {"unlearn": ..., "method": ...}, as the run used them
    seed: int
    stop_reason: str
    epochs: int  # the kept epoch
    budget_limit: float
    data_scale: float  # the step factor for the data's size
    backoffs: list[BackOff]
    unlearn_seconds: float
    check_seconds: float  # the part of unlearn_seconds spent on budget checks
    seconds_per_fact: float
    facts: int
    peak_memory_bytes: int
    device: str
    threads: int  # torch's intra-op threads: part of what makes a CPU run repeat
    torch: str  # torch's version
    before: EpochRecord
    after: EpochRecord

    def to_json(self) -> dict[str, Any]:
        """The JSON form (its keys in the module docstring)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["backoffs"] = [b.to_json() for b in self.backoffs]
        data["before"], data["after"] = self.before.to_json(), self.after.to_json()
        return data


@dataclass(frozen=True)
class AttackEpoch:
    """The eval facts (V) after one attack epoch (epoch 0: before the attack)."""

    epoch: int
    facts: FactScores  # the eval facts
    train_loss: float | None = None  # mean training loss of the epoch's steps; None where nothing trains
    seconds: float = 0.0  # cumulative training time, evaluation excluded
    per_fact: FactTable | None = None  # the eval facts one by one (`facts` is its mean)

    @classmethod
    def of(cls, epoch: int, table: FactTable, train_loss: float | None, seconds: float) -> AttackEpoch:
        """The epoch's record from its per-fact scores."""
        return cls(epoch, table.means(), train_loss, seconds, table)

    def to_json(self) -> dict[str, Any]:
        """`{"epoch", "facts", "train_loss", "seconds", "per_fact"}`."""
        return {
            "epoch": self.epoch,
            "facts": self.facts.to_json(),
            "train_loss": self.train_loss,
            "seconds": self.seconds,
            "per_fact": self.per_fact.to_json() if self.per_fact is not None else None,
        }


@dataclass(frozen=True)
class ParameterChanges:
    """What an attack that trains weights claimed against what changed (parameter names)."""

    changed_parameters: list[str]
    unchanged_claimed: list[str]  # claimed but unchanged, e.g. an lr too small for the dtype
    changed_unclaimed: list[str]  # changed but not claimed: should always be empty


@dataclass
class AttackResult:
    """What every attack returns: how the eval facts fared, epoch by epoch, and the attacker's best."""

    history: list[AttackEpoch]  # entry 0: before the attack; then one per epoch
    post_attack: FactScores  # the attacker's best of each metric (see post_attack_definition)
    post_attack_definition: str
    stop_reason: str  # "epochs", "interrupted" or "done" (an attack without epochs)
    seconds: float
    trained_parameters: list[str]  # names of what the attack trained (empty: no weight changes)
    config: dict[str, Any]  # the attack's config, as `cir.config.to_dict` gives it
    changes: ParameterChanges | None = None  # None for an attack that changes no weight
    details: dict[str, Any] = field(default_factory=dict)  # what one attack adds (JSON-ready)
    best_epochs: dict[str, int] = field(default_factory=dict)  # metric -> epoch of its post-attack value
    post_attack_per_fact: FactTable | None = None  # each fact's (smoothed) value at its metric's best epoch

    @property
    def before(self) -> FactScores:
        """V before the attack."""
        return self.history[0].facts

    @property
    def final(self) -> FactScores:
        """V after the attack's last epoch."""
        return self.history[-1].facts

    def to_json(self) -> dict[str, Any]:
        """attack_summary.json's fields (the history goes to attack.jsonl)."""
        return {
            "before": self.before.to_json(),
            "final": self.final.to_json(),
            "post_attack": self.post_attack.to_json(),
            "post_attack_definition": self.post_attack_definition,
            "stop_reason": self.stop_reason,
            "seconds": self.seconds,
            "trained_parameters": list(self.trained_parameters),
            "config": self.config,
            "changes": dataclasses.asdict(self.changes) if self.changes is not None else None,
            "details": self.details,
            "best_epochs": dict(self.best_epochs),
        }


@dataclass(frozen=True)
class RunReport:
    """`cir run`'s outcome: V after unlearning and after the attack, the forget facts, the disruption."""

    method: str
    attack: str
    post_attack_definition: str
    v_after_unlearning: FactScores
    v_post_attack: FactScores
    forget_before: FactScores  # all forget facts (T + V), before unlearning
    forget_after: FactScores  # and after it (the kept epoch)
    general_loss_before: float
    general_loss_after: float
    epochs: int  # epochs kept
    stop_reason: str
    seconds_per_fact: float

    def to_json(self) -> dict[str, Any]:
        """report.json: the fields by name, fact scores as FactScores objects."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrajectoryPoint:
    """One epoch of a bench run's trajectory: V's scores, and the general loss along unlearning."""

    epoch: int
    v: FactScores
    general_loss: float | None = None  # None on the attack's trajectory

    def to_json(self) -> dict[str, Any]:
        """`{"epoch", "general_loss", "v"}`, without general_loss on the attack's trajectory."""
        data: dict[str, Any] = {"epoch": self.epoch}
        if self.general_loss is not None:
            data["general_loss"] = self.general_loss
        return data | {"v": self.v.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrajectoryPoint:
        """Read `to_json`'s form back."""
        return cls(int(data["epoch"]), FactScores.from_json(data["v"]), data.get("general_loss"))


@dataclass(frozen=True)
class BenchRun:
    """One (method, seed, budget) of `cir bench`: V before, after unlearning and after the attack."""

    method: str
    seed: int
    budget: float
    epochs: int  # the last epoch within the budget
    v_before: FactScores
    v_unlearned: FactScores
    v_post_attack: FactScores
    general_loss_before: float
    general_loss_after: float
    seconds_per_fact: float  # unlearning wall time up to the kept epoch / facts
    unlearn_trajectory: list[TrajectoryPoint]  # every epoch of the run, past this budget's too
    attack_trajectory: list[TrajectoryPoint]
    post_attack_definition: str
    stop_reasons: dict[str, str | None]  # {"unlearn": ..., "attack": ...}
    heldout_before: FactScores | None = None  # other domains' facts (selectivity), when the bench has them
    heldout_unlearned: FactScores | None = None  # the same, at the kept epoch
    fold: int = 0  # which of the seed's K folds V is (0 with one split)
    attack_lr: float | None = None  # the lr of the attacker's best run of the sweep (None: no sweep)
    attack_epochs: dict[str, int] = field(default_factory=dict)  # metric -> epoch of its post-attack value
    per_fact: list[FactRecord] = field(default_factory=list)  # every fact's scores at every stage

    def v(self, stage: str) -> FactScores:
        """V's scores at `stage`: "before", "unlearned" or "post_attack"."""
        return {"before": self.v_before, "unlearned": self.v_unlearned, "post_attack": self.v_post_attack}[
            stage
        ]

    def to_json(self) -> dict[str, Any]:
        """The fields by name; fact scores as FactScores objects, trajectories as TrajectoryPoint lists."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("v_before", "v_unlearned", "v_post_attack", "heldout_before", "heldout_unlearned"):
            data[name] = data[name].to_json() if data[name] is not None else None
        for name in ("unlearn_trajectory", "attack_trajectory"):
            data[name] = [point.to_json() for point in data[name]]
        data["stop_reasons"] = dict(self.stop_reasons)
        data["attack_epochs"] = dict(self.attack_epochs)
        data["per_fact"] = [record.to_json() for record in self.per_fact]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchRun:
        """Read `to_json`'s form back (results written before a field get its default)."""
        values = dict(data)
        for name in ("v_before", "v_unlearned", "v_post_attack"):
            values[name] = FactScores.from_json(values[name])
        for name in ("heldout_before", "heldout_unlearned"):  # absent from results written before them
            values[name] = FactScores.from_json(values[name]) if values.get(name) is not None else None
        for name in ("unlearn_trajectory", "attack_trajectory"):
            values[name] = [TrajectoryPoint.from_json(point) for point in values[name]]
        values["per_fact"] = [FactRecord.from_json(record) for record in values.get("per_fact", [])]
        return cls(**values)


@dataclass(frozen=True)
class ControlRun:
    """The bench's control for one seed and fold: the same attack on the never-unlearned model."""

    seed: int
    fold: int
    v_before: FactScores
    v_post_attack: FactScores  # the attacker's best, as for the methods
    attack_lr: float | None
    attack_epoch: int | None  # the epoch of the bench metric's post-attack value
    attack_trajectory: list[TrajectoryPoint]
    stop_reason: str
    per_fact: list[FactRecord]  # V before and at every attack epoch and the post-attack point

    def to_json(self) -> dict[str, Any]:
        """The fields by name, as BenchRun's."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["v_before"], data["v_post_attack"] = self.v_before.to_json(), self.v_post_attack.to_json()
        data["attack_trajectory"] = [point.to_json() for point in self.attack_trajectory]
        data["per_fact"] = [record.to_json() for record in self.per_fact]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ControlRun:
        """Read `to_json`'s form back."""
        values = dict(data)
        for name in ("v_before", "v_post_attack"):
            values[name] = FactScores.from_json(values[name])
        values["attack_trajectory"] = [TrajectoryPoint.from_json(p) for p in values["attack_trajectory"]]
        values["per_fact"] = [FactRecord.from_json(record) for record in values["per_fact"]]
        return cls(**values)


@dataclass
class BenchResults:
    """results.json of `cir bench`: the configs, every run, and the aggregated table."""

    config: dict[str, Any]  # sections bench, unlearn, attack, methods (at the largest budget), tuned
    facts: int  # known facts, split into T and V per seed
    definition: dict[str, str]  # what each reported number means
    runs: list[BenchRun]
    table: list[dict[str, Any]]  # one row per (budget, method): mean and `_std` of every number
    controls: list[ControlRun] = field(default_factory=list)  # the attack on the never-unlearned model

    def to_json(self) -> dict[str, Any]:
        """`{"config", "facts", "definition", "runs", "table", "controls"}`."""
        return {
            "config": self.config,
            "facts": self.facts,
            "definition": self.definition,
            "runs": [run.to_json() for run in self.runs],
            "table": self.table,
            "controls": [control.to_json() for control in self.controls],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchResults:
        """Read `to_json`'s form back."""
        runs = [BenchRun.from_json(run) for run in data["runs"]]
        controls = [ControlRun.from_json(c) for c in data.get("controls", [])]
        return cls(
            data["config"], int(data["facts"]), dict(data["definition"]), runs, list(data["table"]), controls
        )
