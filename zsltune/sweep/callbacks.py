"""Driver-side Tune callbacks: Parquet results as they arrive, and a compact progress line."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Any

from ray import tune

from zsltune.errors import DIVERGED
from zsltune.results import EPOCHS_FILE, TRIALS_FILE, ResultsSink
from zsltune.storage import Location
from zsltune.sweep.budget import reached
from zsltune.sweep.overrides import split_config

#: the driver's files a remote sweep uploads after each write (the Optuna journal with the rows it matches)
UPLOADED = (TRIALS_FILE, EPOCHS_FILE, "optuna.journal")


class ParquetCallback(tune.Callback):
    """Writes trials.parquet / epochs.parquet as results arrive; survives ``--resume`` without loss or doubles."""

    def __init__(
        self,
        sweep_dir: Path,
        *,
        metric: str,
        mode: str,
        max_epochs: int,
        meta: dict[str, Any],
        fixed: dict[str, Any] | None = None,
        quiet: bool = False,
        remote: Location | None = None,
        earlier: frozenset[str] = frozenset(),
    ) -> None:
        # trials of the sweep's earlier Tune jobs (a resume that added trials): never this job's orphans; pickled
        # with the job, so a resume of this one knows them too
        self.earlier = frozenset(earlier)
        self.remote = remote  # where the sweep lives when not on this machine: each write is uploaded there
        self.fixed = dict(fixed or {})  # --set hyperparameters, recorded as config columns like sampled ones
        self.sweep_dir, self.metric, self.mode = Path(sweep_dir), metric, mode
        self.max_epochs, self.meta, self.quiet = max_epochs, meta, quiet
        self._sink: ResultsSink | None = None
        self._t0 = time.monotonic()
        self._last_print = 0.0
        self._reconciled = False

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks into the experiment state
        return {**self.__dict__, "_sink": None, "_reconciled": False}

    @property
    def sink(self) -> ResultsSink:
        if self._sink is None:
            self._sink = ResultsSink(self.sweep_dir, metric=self.metric, mode=self.mode)
        return self._sink

    def setup(self, **info: Any) -> None:
        self._t0 = time.monotonic()
        _ = self.sink

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if trials and not getattr(self, "_reconciled", False):  # the first step sees every restored trial
            self._reconciled = True
            self._drop_orphans(trials)

    def _drop_orphans(self, trials: list) -> None:
        """Forget trials this experiment does not know: ones a killed driver started after its last snapshot.

        ``--resume`` restores the experiment as of that snapshot and runs new trials in their place, so their rows
        would count twice. Nothing is dropped when no known trial overlaps the Parquet rows (a restore that failed).
        """
        known = {t.trial_id for t in trials}
        mine = set(self.sink.trials) - getattr(self, "earlier", frozenset())  # a job pickled before `earlier`: none
        if not known & mine:
            return
        orphans = sorted(mine - known)
        if orphans:
            self.sink.drop_trials(orphans)
            self._flush(force=True)
            if not self.quiet:
                print(
                    f"zsltune: dropped {len(orphans)} trial(s) started after the last snapshot of the interrupted "
                    f"run, which the resumed sweep replaces: {', '.join(orphans)}",
                    file=sys.stderr,
                    flush=True,
                )

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # a grid trial (zsltune.sweep.grid) brings its fixed part, its varied part and its seed as overrides
        sampled, over = split_config(trial.config)
        cfg = {**over.hyperparameters(sampled), **self.fixed}  # what run_trial hands the trainer
        meta = self.meta if over.seed is None else {**self.meta, "seed": over.seed}
        self.sink.start_trial(trial.trial_id, config=cfg, **meta)
        self._flush()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if DIVERGED in result:  # not an evaluated epoch: the trial ends as failed (on_trial_complete)
            return
        keep = {k: v for k, v in result.items() if not isinstance(v, dict) and k not in _RAY_NOISE}
        keep["wall_s"] = result.get("time_total_s")
        keep["epoch_s"] = result.get("time_this_iter_s")
        keep["timestamp"] = result.get("timestamp")
        self.sink.add_epoch(trial.trial_id, int(result.get("epoch", result.get("training_iteration", 0))), keep)
        self._flush()
        self._progress(trials)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        # no result arrives while every trial waits for a node: say so every 30 s instead of staying silent
        if time.monotonic() - self._last_print >= 30 and any(getattr(t, "status", "") == "PENDING" for t in trials):
            self._progress(trials, force=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        if DIVERGED in last:  # the configuration failed (not retried: it would fail the same way again)
            self.sink.record_failure(trial.trial_id, str(last[DIVERGED]))
            self.sink.end_trial(trial.trial_id, status="failed", error=str(last[DIVERGED]))
        else:
            done = reached(last, self.max_epochs)  # its whole budget: max_epochs, or what its compute allows
            self.sink.end_trial(trial.trial_id, status="completed" if done else "stopped")
        self._flush(force=True)
        self._progress(trials, force=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A failed attempt Tune retries (``--max-failures``), e.g. a lost node or an out-of-memory trial."""
        self.sink.record_failure(trial.trial_id, error_line(trial))
        self._flush(force=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        reason = error_line(trial)
        self.sink.record_failure(trial.trial_id, reason)
        self.sink.end_trial(trial.trial_id, status="failed", error=reason)
        self._flush(force=True)
        self._progress(trials, force=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._drop_orphans(trials)
        self._flush(force=True, upload=True)

    def get_state(self) -> dict[str, Any] | None:
        """Tune calls this as it snapshots the experiment, before the snapshot reaches storage: flush now.

        ``--resume`` continues every trial after the checkpoint its snapshot records; an epoch row only buffered
        here (flushes are throttled) would otherwise be lost for good when the driver dies. No state to return.
        A remote sweep uploads its files with every snapshot.
        """
        self._flush(force=True, upload=True)
        return None

    def _flush(self, *, force: bool = False, upload: bool = False) -> None:
        """Write the Parquet files if due; a remote sweep uploads them and the journal (also with ``upload``: the
        journal changes without a new row, e.g. as the sampler proposes a trial)."""
        wrote = self.sink.flush(force=force)
        if (wrote or upload) and self.remote is not None and self.remote.local is None:
            self.remote.upload(UPLOADED)

    def _progress(self, trials: list, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (not force and now - self._last_print < 10):
            return
        self._last_print = now
        rows = self.sink.trials.values()
        counts = {s: sum(r.get("status") == s for r in rows) for s in ("running", "completed", "stopped", "failed")}
        best = best_row(list(rows), self.metric, self.mode)
        best_txt = (
            f"best {self.metric} {best[f'best/{self.metric}']:.4f} ({best['trial_id']})" if best else "no result yet"
        )
        el = int(now - self._t0)
        pending = sum(getattr(t, "status", "") == "PENDING" for t in trials)
        waiting = f", {pending} waiting for resources" if pending else ""
        print(
            f"[{el // 60:02d}:{el % 60:02d}] trials {len(trials)}: {counts['running']} running{waiting}, "
            f"{counts['completed']} completed, {counts['stopped']} stopped early, {counts['failed']} failed | "
            f"{best_txt}",
            file=sys.stderr,
            flush=True,
        )


_RAY_NOISE = {
    "config",
    "trial_id",
    "experiment_id",
    "date",
    "hostname",
    "node_ip",
    "done",
    "training_iteration",
    "time_since_restore",
    "iterations_since_restore",
    "checkpoint_dir_name",
    "should_checkpoint",
    "experiment_tag",
    "time_total_s",
    "time_this_iter_s",
    "timestamp",
}


def error_line(trial: Any) -> str:
    """The exception line of a failed trial, e.g. "zsltune...TrialDiverged: loss 'loss' is nan ..."."""
    text = ""
    try:  # the driver writes the error file locally before calling back; storage gets it later
        path = trial.error_file
        text = Path(path).read_text() if path and Path(path).is_file() else (trial.get_error() or "")
    except Exception:  # pragma: no cover - storage hiccup
        pass
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip() and not ln.startswith("Failure #")]
    for ln in reversed(lines):
        if ":" in ln and not ln.startswith(("File ", "^", "~", "Traceback")):
            return ln[:1000]
    return lines[-1][:1000] if lines else "trial failed (no error text)"


def best_row(rows: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    key = f"best/{metric}"
    scored = [r for r in rows if isinstance(r.get(key), int | float) and math.isfinite(r[key])]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda r: r[key])


class CheckpointPruner(tune.Callback):
    """Bounds the checkpoints on storage: a running trial keeps its newest ``keep``, an ended trial its newest one.

    While a trial runs, a checkpoint is deleted once ``keep`` newer ones exist and it is ``min_age_s`` old. Ray's own
    ``num_to_keep`` deletes a checkpoint as soon as a newer one registers, but a driver that dies before its next
    experiment snapshot leaves a state that still points at the deleted one, and ``--resume`` then fails the trial
    ("Could not recover from checkpoint"). The experiment state is snapshotted at least every
    ``TUNE_GLOBAL_CHECKPOINT_S`` (the runner sets 10 s), so a checkpoint older than ``min_age_s`` is one no snapshot
    still needs. PBT clones a leader's checkpoint seconds after choosing it, which the same age rule covers.

    When a trial ends (completed, stopped by the scheduler, failed), everything but its newest checkpoint goes, but
    only once the experiment snapshot *on storage* records it as ended: a resume from an older snapshot would rerun
    it from a checkpoint already deleted. :func:`prune_to_newest` does the same for every trial at the sweep's end.
    """

    def __init__(self, *, keep: int = 2, min_age_s: float = 60.0, poll_s: float = 1.0) -> None:
        self.keep, self.min_age_s, self.poll_s = keep, min_age_s, poll_s
        self._seen: dict[str, float] = {}  # checkpoint path -> when this driver first saw it
        self._ended: dict[str, Any] = {}  # trial id -> trial, until the stored snapshot records its end
        self._last_poll = 0.0

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks into the experiment state
        return {**self.__dict__, "_seen": {}, "_ended": {}}

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        now = time.time()
        for path, info_ in _checkpoints(trial)[: -self.keep]:
            first = self._seen.setdefault(path, now)
            born = info_.mtime.timestamp() if info_.mtime is not None else first  # S3 "folders" have no mtime
            if now - born > self.min_age_s:
                _delete(trial.storage.storage_filesystem, path)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended[trial.trial_id] = trial

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended[trial.trial_id] = trial

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if not self._ended or now - self._last_poll < self.poll_s:
            return
        self._last_poll = now
        some = next(iter(self._ended.values()))
        stored = stored_statuses(some.storage.storage_filesystem, some.storage.experiment_fs_path)
        for tid, trial in list(self._ended.items()):
            status = stored.get(tid, (None, None))[0]
            if status in ("TERMINATED", "ERROR"):
                kept = _checkpoints(trial)
                for path, _ in kept[:-1]:
                    _delete(trial.storage.storage_filesystem, path)
                if status == "TERMINATED" and kept:  # an errored trial may be resumed: it keeps its optimisers
                    slim_checkpoint(trial.storage.storage_filesystem, kept[-1][0])
                del self._ended[tid]


def _checkpoints(trial: Any) -> list[tuple[str, Any]]:
    """A trial's checkpoint folders on storage, oldest first (their names count up)."""
    import pyarrow.fs as pafs

    storage = getattr(trial, "storage", None)
    if storage is None:
        return []
    return _checkpoint_dirs(storage.storage_filesystem, storage.trial_fs_path, pafs)


def _checkpoint_dirs(fs: Any, trial_path: str, pafs: Any) -> list[tuple[str, Any]]:
    try:
        infos = fs.get_file_info(pafs.FileSelector(trial_path, recursive=False, allow_not_found=True))
    except OSError:  # pragma: no cover - storage hiccup: try again at the next checkpoint
        return []
    dirs = [i for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")]
    return [(i.path, i) for i in sorted(dirs, key=lambda i: i.base_name)]


def _delete(fs: Any, path: str) -> None:
    with contextlib.suppress(OSError):
        fs.delete_dir(path)


def stored_statuses(fs: Any, experiment_path: str) -> dict[str, tuple[str, str]]:
    """Each trial's status and folder name in the newest experiment snapshot on storage (what ``--resume`` starts
    from), by trial id; empty while none is readable (none yet, or one being uploaded right now)."""
    import json

    from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint

    try:
        path = _find_newest_experiment_checkpoint(experiment_path, fs)
        if path is None:
            return {}
        with fs.open_input_stream(path) as f:
            state = json.loads(f.read())
        out = {}
        for trial_json, _meta in state["trial_data"]:
            t = json.loads(trial_json)
            out[str(t["trial_id"])] = (str(t["status"]), str(t.get("relative_logdir") or ""))
        return out
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def prune_to_newest(fs: Any, experiment_path: str) -> int:
    """Delete every trial's checkpoints but its newest, and slim that one to weights where the trial ended without
    error (the sweep has ended and its last snapshot is stored); returns how many checkpoints were deleted."""
    import pyarrow.fs as pafs

    status = {folder: st for st, folder in stored_statuses(fs, experiment_path).values()}
    n = 0
    for trial_dir in fs.get_file_info(pafs.FileSelector(experiment_path, recursive=False, allow_not_found=True)):
        if trial_dir.type != pafs.FileType.Directory:
            continue
        kept = _checkpoint_dirs(fs, trial_dir.path, pafs)
        for path, _ in kept[:-1]:
            _delete(fs, path)
            n += 1
        if kept and status.get(trial_dir.base_name) == "TERMINATED":
            slim_checkpoint(fs, kept[-1][0])
    return n


def slim_checkpoint(fs: Any, checkpoint_dir: str) -> bool:
    """Rewrite an ended trial's checkpoint with its modules' weights only (optimiser moments are two thirds of a
    CRnet checkpoint, and nothing trains on from an ended trial); True where it was rewritten. The new file is
    written beside the old and moved over it, so a kill mid-write leaves the full one."""
    import io

    import torch

    from zsltune.methods.base import weights_only
    from zsltune.sweep.trial import CHECKPOINT_FILE

    path = f"{checkpoint_dir}/{CHECKPOINT_FILE}"
    try:
        with fs.open_input_stream(path) as f:
            state = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=False)
        slim = weights_only(state["trainer"])
        if slim is None:
            return False
        buf = io.BytesIO()
        torch.save({**state, "trainer": slim}, buf)
        with fs.open_output_stream(path + ".slim") as f:
            f.write(buf.getvalue())
        fs.move(path + ".slim", path)
        return True
    except (OSError, KeyError, RuntimeError):  # pragma: no cover - storage hiccup or a foreign file: keep it whole
        return False
