"""benchmarks/gpu_session.py in --tiny mode on CPU: every step runs once, and a rerun continues."""

import json

from test_benchmarks import load
from tiny import write_workspace

STEPS = ["per_fact_8b", "per_fact_smollm2", "unlearn_cuda", "unlearn_cpu_reference", "compare", "run_cuda"]


def test_gpu_session_runs_every_step_then_continues(tmp_path, capsys):
    ws = write_workspace(tmp_path / "ws")
    out = tmp_path / "session"
    files = ["--model", str(ws.model), "--train", str(ws.train), "--eval", str(ws.eval)]
    files += ["--retain", str(ws.retain), "--general", str(ws.general)]
    argv = ["--tiny", *files, "--out", str(out), "--with-cpu-reference"]
    session = load("gpu_session")

    assert session.main(argv) == 0
    for step in STEPS:
        record = json.loads((out / f"{step}.json").read_text())
        assert record["error"] is None and record["wall_seconds"] > 0, step
        assert record["device"].startswith("cpu") and record["torch"]
    summary = json.loads((out / "summary.json").read_text())
    assert [row["step"] for row in summary["steps"]] == STEPS
    assert {row["status"] for row in summary["steps"]} == {"ran"}
    compared = json.loads((out / "compare.json").read_text())["result"]
    assert compared["agree"] and compared["max_abs_diff"] <= 1e-6  # same device, same seed
    assert {row["stage"] for row in compared["rows"]} == {"before", "after"}
    assert any(row["metric"] == "disruption.general_loss" for row in compared["rows"])
    assert json.loads((out / "per_fact_8b.json").read_text())["result"]["seconds_per_fact"] > 0
    assert "v_post_attack" in json.loads((out / "run_cuda.json").read_text())["result"]["report"]

    mtimes = {step: (out / f"{step}.json").stat().st_mtime_ns for step in STEPS}
    assert session.main(argv) == 0  # a rerun skips every finished step
    assert {step: (out / f"{step}.json").stat().st_mtime_ns for step in STEPS} == mtimes
    summary = json.loads((out / "summary.json").read_text())
    assert {row["status"] for row in summary["steps"]} == {"skipped"}

    (out / "unlearn_cuda.json").unlink()  # a lost step runs again, and only it
    assert session.main(argv) == 0
    statuses = {row["step"]: row["status"] for row in json.loads((out / "summary.json").read_text())["steps"]}
    assert statuses == {step: "ran" if step == "unlearn_cuda" else "skipped" for step in STEPS}
    assert "skipped" in capsys.readouterr().out


def test_a_failing_step_is_recorded_and_rerun(tmp_path):
    session = load("gpu_session")
    out = tmp_path / "session"
    (out).mkdir()
    (out / "per_fact_8b.json").write_text(json.dumps({"wall_seconds": 1.0, "error": None}))
    (out / "per_fact_smollm2.json").write_text(json.dumps({"wall_seconds": 1.0, "error": None}))
    missing = tmp_path / "missing"
    argv = ["--tiny", "--out", str(out), "--model", str(missing)]
    argv += [a for name in ("train", "eval", "retain", "general") for a in (f"--{name}", str(missing))]
    assert session.main(argv) == 1
    record = json.loads((out / "unlearn_cuda.json").read_text())
    assert record["error"] and record["result"] is None
    statuses = {row["step"]: row["status"] for row in json.loads((out / "summary.json").read_text())["steps"]}
    assert statuses == {
        "per_fact_8b": "skipped",
        "per_fact_smollm2": "skipped",
        "unlearn_cuda": "failed",
        "run_cuda": "failed",
    }
