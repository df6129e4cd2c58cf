"""Every registered method runs one epoch of the shared unlearning loop on a tiny Llama."""

import math

import pytest

import tiny
from cir.registry import METHODS
from cir.unlearn import UnlearnConfig, UnlearnData, unlearn


def test_every_method_is_registered():
    assert len(METHODS.names()) >= 7


@pytest.mark.parametrize("name", METHODS.names())
def test_method_runs_one_epoch_of_the_shared_loop(name):
    data = UnlearnData(forget_facts=tiny.FACTS, retain_texts=tiny.TEXTS[3:5], general_texts=tiny.TEXTS)
    config = UnlearnConfig(method=name, budget=1e9, max_epochs=1, batch_size=4, track_kl=False)
    result = unlearn(tiny.model("llama", layers=3), tiny.tokenizer(), data, config, progress=False)
    assert result.stop_reason == "max_epochs"
    assert len(result.history) == 2
    assert math.isfinite(result.history[1]["forget_loss"])  # the method's own log reaches the history
