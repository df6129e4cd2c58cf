"""The demo on a real pretrained model: forget a knowledge domain, attack, and show what is left.

`cir demo --model smollm2-135m` runs this: the built-in model's cached fact sets (forget: which
country a city is in; held out: element symbols, continents) -> CIR unlearning under the budget
(the model's preset) -> fine-tuning attack on T -> V's accuracy, held-out knowledge and a few greedy
completions before unlearning, after it and after the attack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cir.config import merge
from cir.data.facts import load_facts
from cir.errors import ConfigError
from cir.experiment import config_source
from cir.fact_sets import FactSetPaths, fact_sets_for, heldout_facts
from cir.inputs import Inputs
from cir.pipeline import run
from cir.pretrained import BUILTIN_MODELS
from cir.records import RunReport
from cir.report import run_markdown, table
from cir.stages import StageProbe

SHOWN_FACTS = 4  # V facts whose cloze prompts are completed greedily at each stage
DEMO_FACTS = 100  # forget facts unlearned by the demo (T 80, V 20): minutes on 2 CPU cores
VAL_SHARE = 0.2


@dataclass
class RealDemo:
    """What the demo produced: the run's report, the probe's tables and the fact sets' build report."""

    model: str  # the built-in model's name
    report: RunReport
    probe: StageProbe
    fact_sets: dict[str, Any]
    paths: FactSetPaths

    def markdown(self) -> str:
        """Where the fact sets are and how they were built, the run's report and the probe's tables."""
        return (
            f"{self.model}: fact sets in {self.paths.folder}\n{fact_sets_markdown(self.fact_sets)}\n"
            f"{run_markdown(self.report)}\n{self.probe.markdown()}"
        )


def run_real_demo(
    model: str,
    overrides: dict[str, Any],
    out: Path,
    force: bool = False,
    cache_dir: Path | None = None,
    device: str = "auto",
    facts: int = DEMO_FACTS,
) -> RealDemo:
    """Unlearn the built-in model's forget domain with its preset (plus `overrides`), attack, report.

    The first `facts` of the domain's known facts are unlearned (80% from its T split, 20% from V);
    `cir bench` takes the whole domain.

    Raises:
        ConfigError: for a model that is not built in, or bad overrides.
        ModelError: if the model's wheel is not installed.
        OutputExistsError: if `out` exists and not `force`.
    """
    spec = BUILTIN_MODELS.get(model)
    if spec is None:
        raise ConfigError(f"demo --model: {model!r} is not built in; built in: {sorted(BUILTIN_MODELS)}")
    paths = fact_sets_for(model, cache_dir, device=device)
    train = load_facts(paths.forget_train)[: round(facts * (1 - VAL_SHARE))]
    val = load_facts(paths.forget_val)[: round(facts * VAL_SHARE)]
    heldout = heldout_facts(paths)
    probe = StageProbe.of(heldout, val[:SHOWN_FACTS] + heldout[:1], {"V (forget, attacked)": val})
    raw = merge(config_source(spec.preset), overrides)
    inputs = Inputs(model=model, train=train, eval=val, cache_dir=cache_dir, device=device)  # in memory
    report = run(inputs, raw, "finetune", out, force, probe=probe)
    return RealDemo(model, report, probe, json.loads(paths.report.read_text()), paths)


def fact_sets_markdown(build: dict[str, Any]) -> str:
    """Per-domain prior accuracy and known counts of a fact-set build, and the forget set's controls."""
    rows = [{"domain": name, **scores} for name, scores in build["domains"].items()]
    columns = ["domain", "facts", "known", "acc_t0", "acc_t1", "answer_prob", "surface_heuristic_acc"]
    controls = ", ".join(f"{k} {v:.3f}" for k, v in build["forget_controls"].items())
    return (
        f"{table(rows, columns, markdown=True)}\n\nforget set: T {build['forget_T']}, V {build['forget_V']}; "
        f"controls on it (chance 0.25): {controls}\n"
    )
