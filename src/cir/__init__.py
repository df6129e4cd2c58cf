"""cir: robust, non-disruptive unlearning for Hugging Face causal language models.

The public API: `unlearn` (the shared loop, any registered method), `evaluate_facts`, `load_inputs`
(a model and its data, the demo's by default), the recipes `run` (unlearn -> attack -> report) and
`run_unlearn`, the registries, and the config classes.
Importing registers every method and attack and does nothing else (no device, seed or logging
changes).
"""

from cir import attacks, methods  # noqa: F401  (imported to register every method and attack)
from cir.data.facts import Fact, load_facts
from cir.evals.metrics import evaluate_facts
from cir.pipeline import Inputs, load_inputs, run, run_attack, run_unlearn
from cir.registry import ATTACKS, METHODS
from cir.unlearn import UnlearnConfig, UnlearnData, UnlearnResult, unlearn

__version__ = "0.1.0"

__all__ = [
    "ATTACKS",
    "METHODS",
    "Fact",
    "Inputs",
    "UnlearnConfig",
    "UnlearnData",
    "UnlearnResult",
    "evaluate_facts",
    "load_facts",
    "load_inputs",
    "run",
    "run_attack",
    "run_unlearn",
    "unlearn",
]
