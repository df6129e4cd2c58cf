"""cir: robust, non-disruptive unlearning for Hugging Face causal language models.

The public API: `unlearn` (the shared loop, any registered method), `evaluate_facts`, `load_inputs`
(a model and its data, the demo's by default), the recipes `run` (unlearn -> attack -> report),
`run_unlearn` and `run_attack`, the registries, the config classes and the typed results
(`cir.records`, whose docstring lists their JSON keys).
Importing registers every method and attack and does nothing else (no device, seed or logging
changes).
"""

from cir import attacks, methods  # noqa: F401  (imported to register every method and attack)
from cir.data.facts import Fact, load_facts
from cir.evals.scores import evaluate_facts
from cir.fact_sets import FactSetConfig, build_fact_sets, fact_sets_for
from cir.inputs import Inputs, load_inputs
from cir.model_io import load_model, save_model
from cir.pipeline import run, run_attack, run_unlearn
from cir.records import AttackResult, EpochRecord, FactScores, RunReport, UnlearnHistory
from cir.registry import ATTACKS, METHODS
from cir.unlearn import UnlearnConfig, UnlearnData, UnlearnResult, unlearn

__version__ = "0.1.0"

__all__ = [
    "ATTACKS",
    "METHODS",
    "AttackResult",
    "EpochRecord",
    "Fact",
    "FactScores",
    "FactSetConfig",
    "Inputs",
    "RunReport",
    "UnlearnConfig",
    "UnlearnData",
    "UnlearnHistory",
    "UnlearnResult",
    "build_fact_sets",
    "evaluate_facts",
    "fact_sets_for",
    "load_facts",
    "load_inputs",
    "load_model",
    "run",
    "run_attack",
    "run_unlearn",
    "save_model",
    "unlearn",
]
