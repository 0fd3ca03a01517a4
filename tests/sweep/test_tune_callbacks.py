"""``--callback module:Class``: a user's Ray Tune callback runs beside the sweep's own and sees every result; a bad
one stops the sweep before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest
from ray.tune import Callback

from zsltune.errors import ConfigError
from zsltune.sweep import SweepOptions, run_sweep


class Recorder(Callback):
    """Records every trial result it is shown, as Ray's MLflow or W&B callbacks would log them."""

    seen: ClassVar[list[tuple[str, str, int, float]]] = []

    def __init__(self, tag: str = "untagged") -> None:
        self.tag = tag

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        Recorder.seen.append((self.tag, trial.trial_id, int(result["epoch"]), float(result["H"])))


def test_a_user_callback_sees_every_result(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    Recorder.seen.clear()
    res = run_sweep(
        SweepOptions(
            space="linear", dataset=str(tiny_dataset_dir), storage=str(tmp_path), name="cb", quiet=True,
            num_samples=2, max_epochs=2, scheduler="fifo", callbacks=[f"{__name__}:Recorder"],
            callback_args={"tag": "mine"},
        )
    )  # fmt: skip
    epochs = pd.read_parquet(res.epochs_path)
    got = {(t, e): h for tag, t, e, h in Recorder.seen if tag == "mine"}
    assert len(Recorder.seen) == len(epochs) == 4
    for _, row in epochs.iterrows():
        assert got[(row["trial_id"], row["epoch"])] == pytest.approx(row["H"])


@pytest.mark.parametrize(
    ("ref", "args", "match"),
    [
        ("no_such_module_zsl:Recorder", {}, "cannot import it on the driver"),
        (f"{__name__}", {}, "expected MODULE:CLASS"),
        (f"{__name__}:Path", {}, "not a ray.tune.Callback subclass"),
        (f"{__name__}:Recorder", {"colour": "red"}, "cannot be built from --callback-arg"),
    ],
)
def test_a_bad_callback_is_one_line_and_writes_nothing(
    tiny_dataset_dir: Path, tmp_path: Path, ref: str, args: dict, match: str
) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        run_sweep(
            SweepOptions(
                space="linear", dataset=str(tiny_dataset_dir), storage=str(tmp_path), name="bad", quiet=True,
                callbacks=[ref], callback_args=args,
            )
        )  # fmt: skip
    assert "\n" not in str(e.value) and str(e.value).startswith("--callback")
    assert not any((tmp_path / "bad").glob("*"))
