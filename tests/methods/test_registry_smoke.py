"""Every registered method runs one epoch of the shared unlearning loop on a tiny Llama."""

import math
from pathlib import Path

import pytest

import cir.methods
import tiny
from cir.registry import METHODS
from cir.unlearn import UnlearnConfig, UnlearnData, unlearn

METHOD_FILES = sorted(
    p.stem
    for p in Path(cir.methods.__file__).parent.glob("*.py")
    if p.stem not in ("__init__", "base", "sam")  # sam: the SAM step, mixed in
)


def test_every_method_file_registers_its_own_name():
    assert len(METHOD_FILES) == 10
    assert sorted(METHODS.names()) == METHOD_FILES


@pytest.mark.parametrize("name", METHODS.names())
def test_method_runs_one_epoch_of_the_shared_loop(name):
    data = UnlearnData(forget_facts=tiny.FACTS, retain_texts=tiny.TEXTS[3:5], general_texts=tiny.TEXTS)
    config = UnlearnConfig(method=name, budget=1e9, max_epochs=1, batch_size=4, track_kl=False)
    result = unlearn(tiny.model("llama", layers=3), tiny.tokenizer(), data, config, progress=False)
    assert result.stop_reason == "max_epochs"
    assert len(result.history) == 2
    assert math.isfinite(result.history[1].train["forget_loss"])  # the method's own log reaches the history
