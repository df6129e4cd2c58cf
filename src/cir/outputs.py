"""Output folders and files written atomically: complete or absent, never half-written; the writers.

Every output folder is written next to its final place under a temporary name and renamed into place
only when complete, so an interrupted run never leaves a half-written result, an existing output is
replaced only with `force`, and a protected (input) folder is never overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cir.config import to_dict
from cir.errors import ModelError, OutputExistsError
from cir.records import UnlearnSummary
from cir.runtime import peak_memory_bytes

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from cir.methods.base import MethodConfig
    from cir.records import AttackResult
    from cir.unlearn import UnlearnConfig, UnlearnResult


def check_output_dir(out_dir: Path, force: bool = False, protected: Sequence[Path] = ()) -> None:
    """Fail fast if writing `out_dir` would clobber something; call this before a long run.

    Args:
        out_dir: The output folder to be created.
        force: Whether an existing `out_dir` may be replaced.
        protected: Input folders that must never be replaced, even with `force`.

    Raises:
        ModelError: if `out_dir` is, or contains, a protected folder.
        OutputExistsError: if `out_dir` exists and `force` is false, or it exists and is not a folder.

    """
    out_dir = Path(out_dir)
    resolved = out_dir.expanduser().resolve()
    for folder in protected:
        kept = Path(folder).expanduser().resolve()
        if resolved == kept or resolved in kept.parents:
            raise ModelError(
                f"refusing to write {out_dir}: it would replace the input model folder {folder}; "
                "choose another output folder"
            )
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir() or out_dir.is_symlink():
            raise OutputExistsError(
                f"{out_dir} exists and is not a folder; remove it or choose another output path"
            )
        if not force:
            raise OutputExistsError(f"{out_dir} already exists; pass --force (force=True) to replace it")


@contextmanager
def atomic_output_dir(out_dir: Path, force: bool = False, protected: Sequence[Path] = ()) -> Iterator[Path]:
    """Yield a fresh temporary folder next to `out_dir` and rename it to `out_dir` on normal exit.

    The clobbering checks run up front, before the caller does any work. On any exception
    (KeyboardInterrupt included) the temporary folder is removed and an existing `out_dir` is left
    untouched. With `force`, an existing `out_dir` is replaced only once the new folder is complete.

    Args:
        out_dir: The folder to create.
        force: Replace an existing `out_dir`.
        protected: Input folders that must never be replaced, even with `force`.

    Yields:
        The temporary folder to write into (same filesystem as `out_dir`, so the rename is atomic).

    Raises:
        ModelError: if `out_dir` is, or contains, a protected folder.
        OutputExistsError: if `out_dir` exists and `force` is false (also if it appears while the
            caller works; the finished result is then kept in the temporary folder named by the message).

    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir, force, protected)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(out_dir, "tmp")
    staging.mkdir()  # not mkdtemp: its 0o700 mode would stick to the output; this one follows the umask
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _move_into_place(staging, out_dir, force)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically (`write_text_atomic`).

    Raises:
        TypeError: if `obj` is not JSON-serialisable (nothing is written then).

    """
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and `os.replace`; its folder is created if missing.

    A reader sees either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(path, "tmp")
    try:
        with staging.open("x", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def _sibling(path: Path, tag: str) -> Path:
    """Return a fresh hidden name next to `path` (same filesystem, so renames are atomic)."""
    return path.parent / f".{path.name}.{tag}-{uuid.uuid4().hex[:12]}"


def _move_into_place(staging: Path, out_dir: Path, force: bool) -> None:
    """Rename the complete `staging` folder to `out_dir`, swapping out an old one when `force` is set."""
    backup = None
    if force and out_dir.is_dir():
        backup = _sibling(out_dir, "old")
        out_dir.rename(backup)
    try:
        staging.rename(out_dir)
    except OSError as error:
        if backup is not None:
            backup.rename(out_dir)
        raise OutputExistsError(
            f"cannot move the finished output into {out_dir} ({error.strerror}; did it appear meanwhile?); "
            f"it is kept in {staging}: move it into place by hand, or rerun with --force"
        ) from error
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def write_unlearned(
    folder: Path,
    result: UnlearnResult,
    loop: UnlearnConfig,
    method: MethodConfig,
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    """The unlearned model and tokenizer, metrics.jsonl (one EpochRecord a line) and summary.json."""
    result.model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_jsonl(folder / "metrics.jsonl", result.history.to_json())
    write_json_atomic(folder / "summary.json", unlearn_summary(result, loop, method).to_json())


def unlearn_summary(result: UnlearnResult, loop: UnlearnConfig, method: MethodConfig) -> UnlearnSummary:
    """What summary.json holds: config, seed, epochs, stop reason, back-offs, cost, threads, records."""
    device = next(result.model.parameters()).device
    return UnlearnSummary(
        config={"unlearn": to_dict(loop), "method": to_dict(result.method_config or method)},
        seed=loop.seed,
        stop_reason=result.stop_reason,
        epochs=result.epochs,
        budget_limit=result.budget.limit,
        data_scale=result.data_scale,
        backoffs=result.backoffs,
        unlearn_seconds=result.seconds,
        check_seconds=result.check_seconds,
        seconds_per_fact=result.seconds_per_fact,
        facts=result.facts,
        peak_memory_bytes=peak_memory_bytes(device),
        device=str(device),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        before=result.history.before,
        after=result.kept,
    )


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """One JSON object a line."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def write_attack(folder: Path, attack: str, result: AttackResult) -> None:
    """attack.jsonl (one AttackEpoch a line) and attack_summary.json."""
    write_jsonl(folder / "attack.jsonl", [epoch.to_json() for epoch in result.history])
    write_json_atomic(folder / "attack_summary.json", {"attack": attack, **result.to_json()})
