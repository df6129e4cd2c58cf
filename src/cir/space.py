"""Pieces of `cir tune`'s search spaces that follow the model's shape (`cir.modules.ModelShape`).

Layers are chosen as fractions of depth and component counts are bounded by width, so one space
suits the 4-layer demo model, SmolLM2-135M (30 layers) and Llama-3.1-8B (32 layers) alike:

- a layer window starts at 10%, 20%, 35% or 50% of depth (floored) and is short (10% of depth,
  at least 2 layers) or long (20%, at least 3), clipped at the last layer. The paper's 6-11 of 32
  is the long window at 20%; for the demo model the windows are [0, 1], [0, 1, 2], [1, 2],
  [1, 2, 3] and [2, 3] (a superset of the fixed windows the committed demo study searched);
- a single steered layer (RMU) is the last layer of a window: 1-3 of 4, 5-20 of 30;
- a component count runs from 1 to min(most, width / 2), log-scaled;
- a step norm (every method's η) runs from 0.0005 to 5, log-scaled, the same range for every
  method so no method is tuned on a narrower one. The top was 0.5 until SmolLM2's CIR study put its
  best trial there with all 8 epochs run and the prose loss unchanged: the collapse removes most of
  each update's effect on general text, so CIR needs a larger η than methods without it. The
  bottom was 0.005 until SmolLM2's Gradient Difference study began: at 0.005 its first epoch
  leaves a 1% budget (on layers 6-11 as on all), so its useful steps lie below.

Optuna stores only scalar categorical choices, so a list of layers is offered as text ("1,2"; None
as "default") and turned back into a list here; `study.best_params` shows the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cir.modules import ModelShape

if TYPE_CHECKING:
    from optuna import Trial

WINDOW_STARTS = (10, 20, 35, 50)  # percent of depth where a window starts (floored)
SHORT_WINDOW = (10, 2)  # (percent of depth, fewest layers) of a short window, rounded half up
LONG_WINDOW = (20, 3)  # the same for a long window (the paper's 6 of 32 layers)
STEP_NORMS = (0.0005, 5.0)  # every method's η range, log-scaled (see above)


def percent_of(count: int, percent: int, round_half_up: bool = False) -> int:
    """`percent` % of `count` in integer arithmetic: floored, or rounded half up."""
    return (count * percent + (50 if round_half_up else 0)) // 100


def window_length(shape: ModelShape, rule: tuple[int, int]) -> int:
    """A window's number of layers: `rule`'s percent of depth (rounded), at least its minimum, at most all."""
    percent, fewest = rule
    return min(shape.layers, max(fewest, percent_of(shape.layers, percent, round_half_up=True)))


def window(shape: ModelShape, start: int, length: int) -> list[int]:
    """The layers start .. start + length - 1, clipped at the model's last layer."""
    return list(range(start, min(shape.layers, start + length)))


def long_window(shape: ModelShape, start_percent: int) -> list[int]:
    """The long window starting at `start_percent` % of depth (floored)."""
    return window(shape, percent_of(shape.layers, start_percent), window_length(shape, LONG_WINDOW))


def layer_windows(shape: ModelShape) -> list[list[int]]:
    """Every (start, length) window of the rule above, without repeats, by start then length."""
    lengths = sorted({window_length(shape, SHORT_WINDOW), window_length(shape, LONG_WINDOW)})
    starts = sorted({percent_of(shape.layers, p) for p in WINDOW_STARTS})
    windows = [window(shape, s, n) for s in starts for n in lengths]
    return [w for i, w in enumerate(windows) if w not in windows[:i]]


def window_ends(shape: ModelShape) -> list[int]:
    """The last layer of each window, sorted: choices for a single layer (RMU's steered layer)."""
    return sorted({w[-1] for w in layer_windows(shape)})


def suggest_layers(trial: Trial, name: str, choices: Sequence[Sequence[int] | None]) -> list[int] | None:
    """Suggest one of `choices` (lists of layer indices; None = the config's default) for field `name`."""
    labels = {"default" if c is None else ",".join(map(str, c)): c for c in choices}
    chosen = labels[trial.suggest_categorical(name, list(labels))]
    return None if chosen is None else list(chosen)


def suggest_components(trial: Trial, name: str, shape: ModelShape, most: int = 64) -> int:
    """Suggest a component count for field `name` in 1 .. min(most, width / 2), log-scaled."""
    return trial.suggest_int(name, 1, max(1, min(most, shape.hidden // 2)), log=True)


def suggest_step_norm(trial: Trial) -> float:
    """Suggest a method's `step_norm` (η) in `STEP_NORMS`, log-scaled: one range for every method."""
    return trial.suggest_float("step_norm", *STEP_NORMS, log=True)
