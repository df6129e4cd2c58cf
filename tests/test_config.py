from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from cir.config import (
    SECTIONS,
    from_dict,
    load_yaml,
    merge,
    parse_overrides,
    split_overrides,
    split_sections,
    to_dict,
)
from cir.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class Run:
    name: str
    layers: list[int] = field(default_factory=list)
    mode: Literal["fast", "exact"] = "fast"
    budget: Optional[float] = None  # noqa: UP045
    seed: int | None = 0
    out_dir: Path = Path("runs")
    verbose: bool = False
    optim: Optim = field(default_factory=Optim)


def test_from_dict_builds_every_kind_of_field():
    run = from_dict(
        Run,
        {
            "name": "a",
            "layers": [1, 3],
            "mode": "exact",
            "budget": 1,
            "seed": None,
            "out_dir": "out/x",
            "verbose": True,
            "optim": {"lr": 2, "betas": [0, 1]},
        },
    )
    assert run == Run("a", [1, 3], "exact", 1.0, None, Path("out/x"), True, Optim(2.0, [0.0, 1.0]))
    assert isinstance(run.budget, float) and isinstance(run.optim.lr, float)
    assert isinstance(run.out_dir, Path)
    assert all(isinstance(b, float) for b in run.optim.betas)


def test_defaults_fill_missing_optional_keys():
    run = from_dict(Run, {"name": "a", "optim": {"lr": 0.5}})
    assert run == Run("a", optim=Optim(lr=0.5))
    assert run.optim.betas == [0.9, 0.999]
    assert to_dict(run)["out_dir"] == "runs"


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"src\.yaml: unknown key 'layres' \(did you mean 'layers'\?\)"):
        from_dict(Run, {"name": "a", "layres": [1]}, source="src.yaml")


def test_unknown_nested_key_names_the_path():
    with pytest.raises(ConfigError, match=r"cfg: optim: unknown key 'lrr' \(did you mean 'lr'\?\)"):
        from_dict(Run, {"name": "a", "optim": {"lrr": 1.0}}, source="cfg")


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"config: name: required key is missing"):
        from_dict(Run, {"layers": [1]})


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("name", 3, "name: expected str"),
        ("layers", [1, "two"], r"layers\[1\]: expected int"),
        ("layers", 3, "layers: expected a list"),
        ("layers", [1.5], r"layers\[0\]: expected int"),
        ("mode", "slow", r"mode: must be one of \['fast', 'exact'\]"),
        ("budget", "high", "budget: expected"),
        ("seed", True, "seed: expected"),
        ("verbose", "yes", "verbose: expected true or false"),
        ("verbose", 1, "verbose: expected true or false"),
        ("out_dir", 5, "out_dir: expected Path"),
        ("optim", 0.1, "optim: expected a mapping"),
    ],
)
def test_wrong_type_names_the_key(key, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        from_dict(Run, {"name": "a", key: value})


def test_all_errors_are_reported_together():
    with pytest.raises(ConfigError) as caught:
        from_dict(Run, {"layers": ["x"], "mode": "slow", "optim": {"lr": "big"}, "extra": 1}, source="f.yaml")
    message = str(caught.value)
    for fragment in ["'extra'", "name: required", "layers[0]", "mode: must be one of", "optim: lr"]:
        assert fragment in message
    assert message.count("\n") == 5


def test_parse_overrides_nests_and_types_values():
    result = parse_overrides(
        ["a.b=1", "a.c=0.5", "name=run one", "flag=true", "xs=[1, 2]", "none=null", "empty="]
    )
    assert result == {
        "a": {"b": 1, "c": 0.5},
        "name": "run one",
        "flag": True,
        "xs": [1, 2],
        "none": None,
        "empty": "",
    }
    assert isinstance(result["a"]["b"], int)


def test_parse_overrides_feed_from_dict():
    run = from_dict(
        Run, merge({"name": "base", "optim": {"lr": 0.1}}, parse_overrides(["optim.betas=[0.5, 0.6]"]))
    )
    assert run.optim == Optim(0.1, [0.5, 0.6])


@pytest.mark.parametrize("item", ["x", "=1", "a.=1", "a..b=1", ".a=1"])
def test_parse_overrides_rejects_items_without_key_value(item):
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides([item])


def test_parse_overrides_rejects_bad_yaml_value():
    with pytest.raises(ConfigError, match=r"override 'xs=\[1,2': value is not valid YAML"):
        parse_overrides(["xs=[1,2"])


def test_parse_overrides_rejects_a_key_below_a_plain_value():
    with pytest.raises(ConfigError, match="'a' is set to a value"):
        parse_overrides(["a=2", "a.b=1"])


def test_merge_is_recursive_and_does_not_mutate():
    base = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": 4}
    update = {"a": {"c": {"d": 20}, "g": 5}, "f": {"h": 6}}
    merged = merge(base, update)
    assert merged == {"a": {"b": 1, "c": {"d": 20, "e": 3}, "g": 5}, "f": {"h": 6}}
    assert base == {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": 4}


def test_load_yaml_reads_a_mapping(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("name: a\noptim:\n  lr: 0.5\n")
    assert load_yaml(path) == {"name": "a", "optim": {"lr": 0.5}}
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_yaml(empty) == {}


def test_load_yaml_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: config file not found"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: a\noptim:\n  lr: [1, 2\n  x: 3\nz: }\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: not valid YAML"):
        load_yaml(bad)
    tab = tmp_path / "tab.yaml"
    tab.write_text("name: a\nlayers: 2\n\tseed: 1\n")
    with pytest.raises(ConfigError, match=r"tab\.yaml:3: not valid YAML"):
        load_yaml(tab)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping.*got list"):
        load_yaml(listing)


def test_split_sections_returns_the_used_ones_and_ignores_the_other_known_ones():
    data = {"unlearn": {"lr": 1}, "attack": {"epochs": 2}, "bench": {"seeds": "not checked here"}}
    assert split_sections(data, ["unlearn", "attack", "method"], "run.yaml") == {
        "unlearn": {"lr": 1},
        "attack": {"epochs": 2},
        "method": {},
    }
    assert split_sections(data, ["attack"], "run.yaml") == {"attack": {"epochs": 2}}
    assert set(SECTIONS) == {"unlearn", "method", "methods", "attack", "attacks", "bench", "tune", "eval"}
    assert split_sections({**data, "tune": {"trials": 3}}, ["tune"], "run.yaml") == {"tune": {"trials": 3}}


def test_split_sections_rejects_unknown_sections_with_a_did_you_mean():
    with pytest.raises(ConfigError, match=r"run\.yaml: unknown section 'atack' \(did you mean 'attack'\?\)"):
        split_sections({"atack": {}}, ["unlearn"], "run.yaml")
    with pytest.raises(ConfigError, match=r"unknown section 'tuen' \(did you mean 'tune'\?\)"):
        split_sections({"tuen": {}}, ["unlearn"], "run.yaml")
    with pytest.raises(ConfigError, match=r"section 'evaluation' \(known: unlearn, method, methods"):
        split_sections({"evaluation": {}}, ["unlearn"], "run.yaml")
    # a known section that is not a mapping is an error even for a command that does not read it
    with pytest.raises(ConfigError, match="section 'bench' must be a mapping, got int"):
        split_sections({"bench": 3}, ["unlearn"], "run.yaml")


def test_split_overrides_takes_section_keys_from_anywhere_on_the_line():
    argv = ["bench", "--budget", "0.01", "methods.cir.k_act=8", "--facts", "a=b.jsonl", "bench=x", "x.y=1"]
    assert split_overrides(argv) == (
        ["bench", "--budget", "0.01", "--facts", "a=b.jsonl", "x.y=1"],
        ["methods.cir.k_act=8", "bench=x"],
    )
    assert split_overrides(["--config=unlearn.yaml", "unlearn.budget=0.1"]) == (
        ["--config=unlearn.yaml"],
        ["unlearn.budget=0.1"],
    )
