"""The generation probe: a model that says the answer after the prompt scores 1, one that does not 0."""

import pytest
import torch

import tiny
from cir.errors import ConfigError
from cir.probes.generation import Config, Generation
from probes.test_paraphrase import FACT, OTHER, memorise


def test_the_answer_in_the_continuation_is_a_hit_and_its_absence_is_not():
    model = memorise(tiny.model("llama", layers=2), ["The city of Velm is located in Arda."])
    scores = Generation(Config(max_new_tokens=4)).score(model, tiny.tokenizer(), [FACT, OTHER], batch_size=1)
    assert scores["generation_greedy"] == [1.0, 0.0]  # OTHER's answer, Borel, was never taught
    assert scores["generation_sampled"][1] == 0.0


def test_an_alias_counts_and_sampling_is_seeded_without_touching_the_callers_random_state():
    from dataclasses import replace

    model = memorise(tiny.model("llama", layers=2), ["The city of Orsk is located in Bor."])
    aliased = replace(OTHER, extra={**OTHER.extra, "aliases": ["Bor"]})
    probe = Generation(Config(max_new_tokens=4))
    assert probe.score(model, tiny.tokenizer(), [aliased], 1)["generation_greedy"] == [1.0]
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    first = probe.score(model, tiny.tokenizer(), [FACT, OTHER], 1)
    assert torch.rand(1) == expected  # the probe forked the generator
    assert probe.score(model, tiny.tokenizer(), [FACT, OTHER], 1) == first


def test_max_new_tokens_must_be_positive():
    with pytest.raises(ConfigError, match="max_new_tokens"):
        Config(max_new_tokens=0)
