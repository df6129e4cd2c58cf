"""Search-space pieces that follow the model's shape: layer windows by depth, components by width."""

import optuna
import pytest

import tiny
from cir.modules import ModelShape, model_shape
from cir.space import layer_windows, suggest_components, suggest_layers, window_ends

DEMO, SMOLLM2, LLAMA8B = ModelShape(4, 128), ModelShape(30, 576), ModelShape(32, 4096)


@pytest.mark.parametrize(("arch", "layers", "width"), [("llama", 3, 32), ("gpt2", 5, 64)])
def test_model_shape_reads_depth_and_width(arch, layers, width):
    assert model_shape(tiny.model(arch, layers=layers, width=width)) == ModelShape(layers, width)


def test_demo_windows_cover_the_fixed_ones_the_committed_study_searched():
    assert layer_windows(DEMO) == [[0, 1], [0, 1, 2], [1, 2], [1, 2, 3], [2, 3]]
    assert window_ends(DEMO) == [1, 2, 3]  # RMU's old fixed choices


def test_real_model_windows_start_at_fractions_of_depth():
    starts_30, starts_32 = [3, 6, 10, 15], [3, 6, 11, 16]  # 10, 20, 35, 50% of depth, floored
    assert layer_windows(SMOLLM2) == [list(range(s, s + n)) for s in starts_30 for n in (3, 6)]
    assert layer_windows(LLAMA8B) == [list(range(s, s + n)) for s in starts_32 for n in (3, 6)]
    assert list(range(6, 12)) in layer_windows(LLAMA8B)  # the paper's layers 6-11
    assert window_ends(SMOLLM2) == [5, 8, 11, 12, 15, 17, 20]


@pytest.mark.parametrize("layers", [1, 2, 3, 7, 80])
def test_windows_are_distinct_contiguous_and_inside_any_model(layers):
    windows = layer_windows(ModelShape(layers, 64))
    assert windows and len({tuple(w) for w in windows}) == len(windows)
    for window in windows:
        assert window == list(range(window[0], window[-1] + 1)) and 0 <= window[0] <= window[-1] < layers
    assert all(0 <= end < layers for end in window_ends(ModelShape(layers, 64)))


def test_suggested_layers_round_trip_through_their_text_labels():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    choices = [None, *layer_windows(SMOLLM2)]
    seen = set()
    for _ in range(30):
        trial = study.ask()
        chosen = suggest_layers(trial, "trained_layers", choices)
        assert chosen in choices
        label = trial.params["trained_layers"]
        assert label == ("default" if chosen is None else ",".join(map(str, chosen)))
        seen.add(label)
    assert len(seen) > 3


@pytest.mark.parametrize(
    ("width", "most", "high"), [(8, 64, 4), (128, 64, 64), (4096, 64, 64), (128, 32, 32)]
)
def test_component_range_grows_with_width_up_to_a_cap(width, most, high):
    trial = optuna.create_study().ask()
    suggest_components(trial, "k", ModelShape(4, width), most)
    distribution = trial.distributions["k"]
    assert (distribution.low, distribution.high, distribution.log) == (1, high, True)
