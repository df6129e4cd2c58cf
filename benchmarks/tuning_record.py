"""Every trial of a `cir tune` storage as one Markdown table: the tuning record benchmarks/README.md quotes.

    python benchmarks/tuning_record.py benchmarks/smollm2-tune.db

Per trial: its study, number and state, the params it ran (layer windows as text), the objective
(V's post-attack value of the study's metric), the epochs kept within the study's budget, the
general-loss change at that epoch, V before and after unlearning, and the trial's wall time.
"""

from __future__ import annotations

import argparse

import optuna

from cir.report import table
from cir.tune import storage_url


def rows(storage: str) -> list[dict[str, str]]:
    """One row per trial of every study in `storage`, in study then trial order."""
    found = []
    for summary in optuna.get_all_study_summaries(storage_url(storage, must_exist=True)):
        study = optuna.load_study(study_name=summary.study_name, storage=storage_url(storage))
        metric = study.user_attrs.get("metric", "answer_prob")
        for trial in study.trials:
            attrs = trial.user_attrs
            # a queued trial (waiting, or withdrawn as failed before it ran) has only its fixed params
            shown = trial.params or trial.system_attrs.get("fixed_params", {})
            params = ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()
            )
            if not trial.params:
                params = f"(queued: {params})" if params else "(queued)"
            before, after = attrs.get("general_loss_before"), attrs.get("general_loss_after")
            seconds = (
                (trial.datetime_complete - trial.datetime_start).total_seconds()
                if trial.datetime_complete and trial.datetime_start  # a withdrawn one never started
                else None
            )
            found.append(
                {
                    "study": summary.study_name,
                    "trial": str(trial.number),
                    "state": trial.state.name.lower(),
                    "params": params,
                    f"post-attack {metric}": f"{trial.value:.3f}" if trial.value is not None else "",
                    "epochs": str(attrs.get("epochs", "")),
                    "loss Δ%": f"{100 * (after / before - 1):+.2f}" if before and after else "",
                    f"V {metric} before -> unlearned": (
                        f"{attrs['v_before'][metric]:.3f} -> {attrs['v_unlearned'][metric]:.3f}"
                        if "v_unlearned" in attrs
                        else ""
                    ),
                    "s": f"{seconds:.0f}" if seconds is not None else "",
                }
            )
    return found


def main(argv: list[str] | None = None) -> list[dict[str, str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("storage", help="SQLite path or Optuna storage URL")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found = rows(args.storage)
    print(table(found, list(found[0]), markdown=True) if found else "no trials")
    return found


if __name__ == "__main__":
    main()
