"""Inputs from paths or from facts in memory: the same data either way, and no file written."""

import tiny
from cir.data.facts import save_facts
from cir.inputs import Inputs, attack_facts, facts_of, load_data


def test_facts_in_memory_are_the_same_inputs_as_their_files(tmp_path):
    files = tiny.write_workspace(tmp_path)
    train, val = list(tiny.FACTS[:2]), list(tiny.FACTS[2:])
    save_facts(train, tmp_path / "T.jsonl")
    save_facts(val, tmp_path / "V.jsonl")
    common = {"model": str(files.model), "retain": files.retain, "general": files.general}
    from_files = Inputs(train=tmp_path / "T.jsonl", eval=tmp_path / "V.jsonl", **common)
    in_memory = Inputs(train=train, eval=val, **common)
    assert facts_of(train) == train and facts_of(tmp_path / "T.jsonl") == train
    assert load_data(in_memory, None) == load_data(from_files, None)  # a run forgets T + V
    assert attack_facts(in_memory, None) == (train, val)
    written = sorted(p.name for p in tmp_path.rglob("*"))
    load_data(in_memory, None)
    assert sorted(p.name for p in tmp_path.rglob("*")) == written
