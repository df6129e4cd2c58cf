"""The experiment file: its sections, and the typed configs each command builds from them once.

One YAML file (or preset) holds any of the sections `unlearn`, `method`, `methods`, `attack`,
`bench` and `tune`; `key=value` overrides merge on top (`raw_config`). Each command reads the
sections it uses: `cir unlearn` and `cir run` the loop's and one method's (`unlearn_configs`) and the
attack's (`attack_config`); `cir bench` and `cir tune` the bench's, the loop's, the attack's and
each benched method's (`bench_configs`). Unknown keys, wrong types and keys a command would ignore
are errors that name them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cir.attacks.base import AttackConfig
from cir.config import config_error, from_dict, load_yaml, merge, parse_overrides, require, split_sections
from cir.data.facts import SPLITS, Split
from cir.errors import ConfigError
from cir.methods.base import MethodConfig
from cir.registry import ATTACKS, METHODS, PROBES
from cir.unlearn import UnlearnConfig

PRESETS = Path(__file__).parent / "presets"


UNLEARN_SECTIONS = ["unlearn", "method"]


RUN_SECTIONS = ["unlearn", "method", "attack", "eval"]


@dataclass
class EvalConfig:
    """How V is asked, by every command that scores it (`cir bench`, `cir run`, `cir attack`)."""

    # extra probes (`cir probes`) scoring V at every stage and attack epoch (the bench's attacks: see
    # `bench.probes_at`), beside the MCQ format's and recall; the bench's worst case is taken over
    # them and its headline metric
    probes: list[str] = field(default_factory=lambda: ["paraphrase", "generation"])

    def __post_init__(self) -> None:
        """Check the probes are registered.

        Raises:
            ConfigError: naming the field and the registered probes.
        """
        known = PROBES.names()
        require(
            self, "eval", [("probes", f"registered probes {known}", all(p in known for p in self.probes))]
        )


def config_source(config: str | Path | None) -> dict[str, Any]:
    """Read `--config`: a YAML path or the name of a shipped preset (e.g. `paper_llama8b`).

    Raises:
        ConfigError: if it is neither, or the file cannot be read as a YAML mapping (`load_yaml`).
    """
    if config is None:
        return {}
    path = Path(config)
    if not path.suffix and not path.exists() and (PRESETS / f"{config}.yaml").is_file():
        path = PRESETS / f"{config}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
        raise ConfigError(f"{config}: no such config file or preset (presets: {known})")
    return load_yaml(path)


def raw_config(config: str | Path | None, overrides: list[str]) -> dict[str, Any]:
    """The config file (or preset) with `key=value` overrides merged on top."""
    return merge(config_source(config), parse_overrides(overrides))


def unlearn_configs(
    sections: dict[str, dict[str, Any]], source: str = "config"
) -> tuple[UnlearnConfig, MethodConfig]:
    """Build the loop's and the chosen method's config from the `unlearn` and `method` sections.

    Raises:
        ConfigError: naming every bad key.
    """
    loop = from_dict(UnlearnConfig, sections["unlearn"], f"{source}: unlearn")
    method: MethodConfig = from_dict(
        METHODS.get(loop.method).config_class, sections["method"], f"{source}: method"
    )
    return loop, method


def attack_config(name: str, sections: dict[str, dict[str, Any]], source: str = "config") -> AttackConfig:
    """The config of attack `name` from the `attack` section.

    Raises:
        ConfigError: for an unknown attack or a bad key.
    """
    return from_dict(ATTACKS.get(name).config_class, sections["attack"], f"{source}: attack")


BENCH_SECTIONS = ["bench", "unlearn", "attack", "attacks", "methods", "eval"]


@dataclass
class BenchConfig:
    """What the bench compares and how."""

    methods: list[str] = field(
        default_factory=lambda: ["cir", "mlp_breaking", "grad_diff", "circuit_breakers"]
    )
    budgets: list[float] = field(default_factory=lambda: [0.001, 0.01])  # relative general-loss rises
    # seeds 0..seeds-1: each its own T/V split and unlearning order. 1 by default so that `cir bench`
    # on the demo model prints its matrix within 10 minutes on 2 CPU cores (7 min 11 s measured);
    # the intervals are over facts
    seeds: int = 1
    # the first seed: seeds first_seed .. first_seed + seeds - 1, so one bench can be run a seed (or a
    # few) at a time over sessions or machines and merged (benchmarks/merge_bench.py)
    first_seed: int = 0
    attack: str = "finetune"  # a registered attack (`cir attacks`)
    val_fraction: float = 0.2  # share of known facts in V
    known_threshold: float = 0.25  # keep facts whose prior acc_t1 is at least this (the paper's rule)
    prior_field: str | None = None  # fact field holding the prior acc_t1; None = measure it with the model
    metric: Literal["answer_prob", "acc_t1", "acc_t0"] = "answer_prob"  # the headline V metric
    heldout_max: int = 80  # other domains' facts scored for selectivity: at most this many, evenly spaced
    # "answer_disjoint": no V answer is a T answer, so the attack cannot re-teach V's answer tokens
    # themselves; "random": the split before (facts shuffled one by one)
    split: Split = "answer_disjoint"
    folds: int = 0  # >= 2: K folds, every known fact in V once per seed (one unlearning run serves all)
    # "held_out": methods train on no sentence that starts with the scored prompt, so breaking that
    # exact string is not scored as forgetting; "trained": every sentence (the loop before)
    eval_prompts: Literal["held_out", "trained"] = "held_out"
    attack_lrs: list[float] = field(default_factory=list)  # the attack's lr sweep; empty: attack.lr only
    control: bool = True  # also attack the never-unlearned model, the same way (drops measured against it)
    # where the extra probes score V after an attack: "chosen", once per attack, on the model at the
    # attacker's chosen point (the lr and epoch where V's smoothed `metric` peaks, replayed), for
    # attacks that can replay (finetune, other_data, benign_relearn, quantize; the others score every
    # epoch); "every_epoch": at every epoch of every run of the lr sweep (a probe's own best epoch)
    probes_at: Literal["chosen", "every_epoch"] = "chosen"
    # attacks also run on every model `attack` attacks (each method's and the control), each fold,
    # after it: each is a further column of the matrix (methods x attack/probe) and of the worst case.
    # quantize costs seconds, so every bench asks whether a user's export would give the facts back.
    # Settings under `attacks.<name>` (defaults otherwise); one with an lr sweeps `attack_lrs`.
    extra_attacks: list[str] = field(default_factory=lambda: ["quantize"])
    # the extra probes, from the `eval:` section (`EvalConfig`), set by `bench_configs`
    probes: list[str] = field(init=False, default_factory=list)
    # each extra attack's config, from the `attacks:` section, set by `bench_configs`
    extra_configs: dict[str, Any] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        """Check ranges; drop `attack` from `extra_attacks` (it runs anyway, e.g. `bench.attack=quantize`).

        Raises:
            ConfigError: naming every field out of range.
        """
        self.extra_attacks = [a for a in self.extra_attacks if a != self.attack]
        require(
            self,
            "bench",
            [
                ("methods", "a non-empty list", len(self.methods) > 0),
                ("budgets", "a non-empty list of values > 0", bool(self.budgets) and min(self.budgets) > 0),
                ("seeds", ">= 1", self.seeds >= 1),
                ("first_seed", ">= 0", self.first_seed >= 0),
                ("heldout_max", ">= 0", self.heldout_max >= 0),
                ("val_fraction", "in (0, 1)", 0 < self.val_fraction < 1),
                ("split", f"one of {list(SPLITS)}", self.split in SPLITS),
                ("folds", "0 (one split by val_fraction) or >= 2", self.folds == 0 or self.folds >= 2),
                ("eval_prompts", "held_out or trained", self.eval_prompts in ("held_out", "trained")),
                ("attack_lrs", "values > 0", all(lr > 0 for lr in self.attack_lrs)),
                ("probes_at", "chosen or every_epoch", self.probes_at in ("chosen", "every_epoch")),
                (
                    "extra_attacks",
                    f"distinct registered attacks {ATTACKS.names()}",
                    all(a in ATTACKS.names() for a in self.extra_attacks)
                    and len(set(self.extra_attacks)) == len(self.extra_attacks),
                ),
                (
                    "probes",
                    f"registered probes {PROBES.names()}",
                    all(p in PROBES.names() for p in self.probes),
                ),
                (
                    "metric",
                    "answer_prob, acc_t1 or acc_t0",
                    self.metric in ("answer_prob", "acc_t1", "acc_t0"),
                ),
            ],
        )

    @property
    def seed_range(self) -> range:
        """The seeds this bench runs: `seeds` of them from `first_seed`."""
        return range(self.first_seed, self.first_seed + self.seeds)


# Loop keys the bench sets itself, per run: a value in the config would be ignored, so it is refused.
SET_BY_BENCH = {"budget": "bench.budgets", "method": "bench.methods", "seed": "bench.seeds"}


def bench_configs(
    raw: dict[str, Any], extra_methods: Sequence[str] = (), command: str = "cir bench"
) -> tuple[BenchConfig, UnlearnConfig, AttackConfig, dict[str, Any]]:
    """The bench, loop and attack configs, and the `methods` section (checked, still raw overrides).

    Raises:
        ConfigError: naming every bad key, a loop key the bench sets itself (`SET_BY_BENCH`, named
            with `command`), or a `methods.<name>` section for a method not benched (nor in
            `extra_methods`).
    """
    sections = split_sections(raw, BENCH_SECTIONS, "config")
    ignored = [
        f"config: unlearn.{key} is not read by {command}, which sets it from {source}; remove it"
        for key, source in SET_BY_BENCH.items()
        if key in sections["unlearn"]
    ]
    if ignored:
        raise config_error(ignored)
    if raw.get("method"):
        warnings.warn(
            f"{command} does not read the method: section (it is `cir unlearn`'s and `cir run`'s); "
            "each benched method's settings go under methods.<name>",
            stacklevel=2,
        )
    bench = from_dict(BenchConfig, sections["bench"], "config: bench")
    bench.probes = list(from_dict(EvalConfig, sections["eval"], "config: eval").probes)
    bench.extra_configs = extra_attack_configs(bench, sections["attacks"])
    loop = from_dict(UnlearnConfig, sections["unlearn"], "config: unlearn")
    per_method_configs([*bench.methods, *extra_methods], sections["methods"])
    return bench, loop, attack_config(bench.attack, sections), sections["methods"]


def extra_attack_configs(bench: BenchConfig, section: dict[str, Any]) -> dict[str, AttackConfig]:
    """The config of each of `bench.extra_attacks`, from its `attacks.<name>` mapping (or defaults).

    Raises:
        ConfigError: for a section of an attack not in `bench.extra_attacks`, or a bad key.
    """
    stray = [name for name in section if name not in bench.extra_attacks]
    if stray:
        raise ConfigError(
            f"config: attacks.{stray[0]} is set but {stray[0]!r} is not in bench.extra_attacks "
            f"{bench.extra_attacks}"
        )
    configs: dict[str, AttackConfig] = {}
    for name in bench.extra_attacks:
        own = section.get(name) or {}
        if not isinstance(own, dict):
            raise ConfigError(f"config: attacks.{name} must be a mapping, got {type(own).__name__}")
        try:
            configs[name] = from_dict(ATTACKS.get(name).config_class, own, f"config: attacks.{name}")
        except ConfigError as error:  # an attack's own checks name its keys "attack.<key>"
            raise ConfigError(str(error).replace("attack.", f"attacks.{name}.")) from None
    return configs


def per_method_configs(
    names: Sequence[str], overrides: Mapping[str, Any], tuned: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """Each method's config: its defaults, then its `tuned` overrides, then the `methods.<name>` section's.

    Raises:
        ConfigError: for a section naming a method not benched, or a bad key.
    """
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ConfigError(f"config: methods: {unknown} not in bench.methods {list(names)}")
    tuned = tuned or {}
    return {
        name: unlearn_configs(
            {"unlearn": {"method": name}, "method": merge(tuned.get(name, {}), overrides.get(name, {}))},
            f"config: methods.{name}",
        )[1]
        for name in names
    }


@dataclass(frozen=True)
class Experiment:
    """One command's typed configs, built once from the experiment file (and overrides) at its start.

    Each builder reads the sections its command uses and checks every key before any model loads;
    what a command does not use stays None.
    """

    unlearn: UnlearnConfig
    method: MethodConfig | None = None  # `cir unlearn` and `cir run`: the one method's settings
    attack: AttackConfig | None = None  # `cir attack`, `cir run`, `cir bench`, `cir tune`
    bench: BenchConfig | None = None  # `cir bench` and `cir tune`
    methods: dict[str, Any] = field(default_factory=dict)  # bench/tune: each method's raw overrides
    eval: EvalConfig = field(default_factory=EvalConfig)  # the probes V is scored with

    @classmethod
    def for_unlearn(cls, raw: dict[str, Any]) -> Experiment:
        """`cir unlearn`: the loop and its method.

        Raises:
            ConfigError: naming every bad key.
        """
        loop, method = unlearn_configs(split_sections(raw, UNLEARN_SECTIONS, "config"))
        return cls(loop, method)

    @classmethod
    def for_run(cls, raw: dict[str, Any], attack: str) -> Experiment:
        """`cir run`: the loop, its method and the attack `attack`.

        Raises:
            ConfigError: naming every bad key, or an unknown attack.
        """
        sections = split_sections(raw, RUN_SECTIONS, "config")
        loop, method = unlearn_configs(sections)
        probes = from_dict(EvalConfig, sections["eval"], "config: eval")
        return cls(loop, method, attack_config(attack, sections), eval=probes)

    @classmethod
    def for_attack(cls, raw: dict[str, Any], attack: str) -> Experiment:
        """`cir attack`: the attack's settings alone (the loop stays at its defaults, unused).

        Raises:
            ConfigError: naming every bad key, or an unknown attack.
        """
        sections = split_sections(raw, ["attack", "eval"], "config")
        probes = from_dict(EvalConfig, sections["eval"], "config: eval")
        return cls(UnlearnConfig(), attack=attack_config(attack, sections), eval=probes)

    @classmethod
    def for_bench(
        cls, raw: dict[str, Any], extra_methods: Sequence[str] = (), command: str = "cir bench"
    ) -> Experiment:
        """`cir bench` (and `cir tune`, with its `command` name): `bench_configs`' four parts.

        Raises:
            ConfigError: as `bench_configs`.
        """
        bench, loop, attack, methods = bench_configs(raw, extra_methods, command)
        return cls(
            loop, attack=attack, bench=bench, methods=dict(methods), eval=EvalConfig(list(bench.probes))
        )

    def bench_parts(self) -> tuple[BenchConfig, UnlearnConfig, AttackConfig, dict[str, Any]]:
        """(bench, loop, attack, per-method overrides) of an experiment built by `for_bench`."""
        assert self.bench is not None and self.attack is not None, "not built by for_bench"
        return self.bench, self.unlearn, self.attack, self.methods
