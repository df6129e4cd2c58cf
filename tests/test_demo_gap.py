"""benchmarks/demo_gap.py on a tiny workspace: one row per variant, finite numbers, a rerun continues."""

import json
import math

from test_benchmarks import load
from tiny import write_workspace

VARIANTS = ["baseline", "layers_3", "retain_facts_only", "small_steps", "sgd_attack"]
FAST = [
    "--set",
    *("bench.known_threshold=0", "bench.val_fraction=0.34"),
    *("unlearn.max_epochs=2", "unlearn.batch_size=2", "attack.epochs=1", "attack.batch_size=2"),
    *("methods.cir.k_act=1", "methods.cir.k_grad=1"),  # the tuned 54/24 do not fit a 32-wide model
]


def test_demo_gap_writes_one_row_per_variant_then_continues(tmp_path, capsys):
    ws = write_workspace(tmp_path / "ws", layers=4)  # 4 layers, like the demo: its layer lists fit
    out = tmp_path / "gap"
    files = ["--model", str(ws.model), "--facts", str(ws.facts), "--device", "cpu"]
    files += ["--retain", str(ws.retain), "--general", str(ws.general)]
    gap = load("demo_gap")  # with the committed demo-tune.db: the tuned trials, shrunk by FAST

    rows = gap.main([*files, "--out", str(out), "--quiet", "--variants", *VARIANTS[:3], *FAST])
    assert [r["variant"] for r in rows] == VARIANTS[:3]
    mtimes = [(out / f"{name}.json").stat().st_mtime_ns for name in VARIANTS[:3]]
    assert gap.main([*files, "--out", str(out), "--quiet", "--variants", *VARIANTS, *FAST])
    assert capsys.readouterr().out.count("done already, skipped") == 3
    assert [(out / f"{name}.json").stat().st_mtime_ns for name in VARIANTS[:3]] == mtimes

    saved = json.loads((out / "demo_gap.json").read_text())
    assert [r["variant"] for r in saved["rows"]] == VARIANTS
    for row in saved["rows"]:
        assert all(math.isfinite(row[k]) for k in ("cir_drop", "cb_drop", "wall_seconds")), row
        assert row["ratio"] is None or math.isfinite(row["ratio"])
        assert (out / row["variant"] / "results.json").is_file()
    table = (out / "demo_gap.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in table if line.startswith("| ")][1:] == VARIANTS
    by_name = {r["variant"]: r for r in saved["rows"]}
    # the retain file keeps the one retain line of the workspace that is not a general-text line
    assert (out / "retain_facts_only.txt").read_text().splitlines() == ws.retain.read_text().splitlines()[:1]
    # small_steps divides the tuned step norms (cir 0.104, circuit_breakers 0.029) and triples the epochs
    methods = json.loads((out / "small_steps" / "results.json").read_text())["config"]["methods"]
    assert math.isclose(methods["circuit_breakers"]["step_norm"] * 3, 0.0293, rel_tol=0.01)
    assert math.isclose(methods["cir"]["step_norm"] * 3, 0.104, rel_tol=0.01)
    assert by_name["small_steps"]["overrides"]["unlearn"]["max_epochs"] == 6
    assert json.loads((out / "layers_3" / "results.json").read_text())["config"]["methods"]["cir"][
        "forget_layers"
    ] == [3]
