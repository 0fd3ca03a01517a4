"""A CRnet sweep written by hand with Ray Tune + Optuna: the baseline of ``bench_sweep_throughput.py``.

This is the script a competent user writes without zsltune, following the CRnet paper (Zhang et al., ICML 2019)
and the Relation Network code it builds on: every trial

- loads the xlsa17 files itself (``scipy.io.loadmat`` of ``res101.mat`` and ``att_splits.mat``),
- builds a ``torch.utils.data.DataLoader`` (``TensorDataset``, batch 32, ``shuffle=True``) over the features,
- computes K = 3 field centres (k-means of the seen classes' attributes), K expert MLPs and the cooperation module
  (sum of the experts' outputs) to get one visual anchor per class,
- runs the relation module on all B·C concatenated (anchor, image) pairs: ``torch.cat`` -> (B·C, 4096) ->
  Linear(4096, 2048) -> ReLU -> Linear(2048, 1) -> sigmoid, MSE against the one-hot labels plus the paper's
  α‖W_f‖² + β‖W_g‖², Adam at lr 1e-5,
- evaluates the same naive way (all eval images x all 40 classes, concatenated pairs) at the end of each epoch and
  calls ``tune.report`` once per epoch.

The sweep is a standard ``tune.Tuner`` with ``OptunaSearch`` (default TPE) and default settings, except
``max_concurrent_trials=2`` and 1 CPU per trial. K, hidden and batch are fixed at the paper defaults (K=3, hidden
2048, batch 32) so every trial costs the same; lr, α and β are searched around the paper's values.

Which images: the same training images as zsltune's ``val`` stage, so that "one epoch" is the same work on both
sides. The script reads ``res101.mat``/``att_splits.mat`` itself and *recomputes* the index arrays the way
zsltune's protocol does (train classes of ``trainval`` from ``trainclasses1.txt``, minus a seeded 20% per class held
out as pseudo-seen; pseudo-unseen = ``trainval`` images of ``valclasses1.txt``), without importing zsltune, so it
stays a standalone script; ``bench_sweep_throughput.py`` checks the arrays equal zsltune's ``StageData.index_*``.

Measurement hooks (the only additions a user would not write; off by default):

- ``--report-every N`` also calls ``tune.report`` every N training steps with a fractional ``epoch_progress``
  (and ``train_wall_s``, seconds since the trial's first step), so throughput can be measured before an epoch of
  several minutes ends;
- ``--budget S`` sets ``TuneConfig(time_budget_s=S)``; ``--out FILE`` writes every trial's reports as JSON;
- ``--time-eval N`` does not sweep: it times this script's end-of-epoch evaluation on N eval images (1 thread,
  after a warm-up batch) and prints the per-image cost as JSON, for the benchmark to add one eval per epoch.

    python benchmarks/handwritten_crnet_tune.py --data-dir ~/.cache/zsltune/synth/AWA2-<hash> --num-samples 8
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
import scipy.io
import torch
import torch.nn.functional as F
from ray import tune
from ray.tune.search.optuna import OptunaSearch
from sklearn.cluster import KMeans
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


# ---- data: the xlsa17 files, and zsltune's val-stage split recomputed ---------------------------------------------
def read_list(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def holdout(labels: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Hold out ``share`` of each class's images (>= 1, never all): the same draw as zsltune's val protocol."""
    mask = np.zeros(labels.shape[0], dtype=bool)
    order = rng.permutation(labels.shape[0])
    lab = labels[order]
    sort = np.argsort(lab, kind="stable")
    counts = np.bincount(lab)
    starts = np.cumsum(counts) - counts
    rank = np.arange(lab.shape[0]) - np.repeat(starts, counts)
    n_hold = np.where(counts >= 2, np.clip(np.round(counts * share), 1, counts - 1), 0)
    mask[order[sort]] = rank < np.repeat(n_hold, counts)
    return mask


def val_split(data_dir: Path, labels: np.ndarray, splits: dict, *, seed: int = 0, share: float = 0.2):
    """Index arrays (train, seen, unseen) of the val stage and the class ids (train classes first, then val)."""
    names = [str(np.asarray(c).ravel()[0]).strip() for c in splits["allclasses_names"].ravel()]
    index = {n: i for i, n in enumerate(names)}
    train_cls = np.array(sorted(index[n] for n in read_list(data_dir / "trainclasses1.txt")))
    val_cls = np.array(sorted(index[n] for n in read_list(data_dir / "valclasses1.txt")))
    trainval = splits["trainval_loc"].astype(np.int64).ravel() - 1
    tv_labels = labels[trainval]
    pool = trainval[np.isin(tv_labels, train_cls)]
    held = holdout(labels[pool], share, np.random.default_rng(seed))
    unseen = trainval[np.isin(tv_labels, val_cls)]
    return pool[~held], pool[held], unseen, np.concatenate([train_cls, val_cls]), len(train_cls)


def load_data(data_dir: str):
    """What each trial does first: read both .mat files and cut the val stage."""
    d = Path(data_dir)
    res = scipy.io.loadmat(str(d / "res101.mat"))
    splits = scipy.io.loadmat(str(d / "att_splits.mat"))
    features = res["features"].T.astype(np.float32)  # (N, 2048)
    labels = res["labels"].astype(np.int64).ravel() - 1
    idx_tr, idx_s, idx_u, class_ids, n_seen = val_split(d, labels, splits)
    remap = np.full(labels.max() + 1, -1)
    remap[class_ids] = np.arange(len(class_ids))
    att = splits["att"].T[class_ids].astype(np.float32)  # (40, 85), train classes first
    att /= np.linalg.norm(att, axis=1, keepdims=True)
    return {
        "x_train": features[idx_tr],
        "y_train": remap[labels[idx_tr]],
        "x_seen": features[idx_s],
        "y_seen": remap[labels[idx_s]],
        "x_unseen": features[idx_u],
        "y_unseen": remap[labels[idx_u]],
        "att": att,
        "n_seen": n_seen,
    }


# ---- CRnet ------------------------------------------------------------------------------------------------------
class CRnet(nn.Module):
    def __init__(self, centres: np.ndarray, feat_dim: int = 2048, hidden: int = 2048):
        super().__init__()
        k, p = centres.shape
        self.register_buffer("centres", torch.from_numpy(centres))
        self.experts = nn.ModuleList(nn.Linear(p, feat_dim) for _ in range(k))  # K expert modules
        self.relation = nn.Sequential(nn.Linear(2 * feat_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())

    def anchors(self, att: torch.Tensor) -> torch.Tensor:  # cooperation module: sum of the experts
        return sum(F.relu(e(att - c)) for e, c in zip(self.experts, self.centres, strict=True))

    def forward(self, x: torch.Tensor, att: torch.Tensor) -> torch.Tensor:  # (B, D), (C, P) -> (B, C)
        a = self.anchors(att)
        b, c = x.shape[0], a.shape[0]
        pairs = torch.cat([a.unsqueeze(0).expand(b, c, -1), x.unsqueeze(1).expand(b, c, -1)], dim=2)
        return self.relation(pairs.reshape(b * c, -1)).view(b, c)


def per_class_acc(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


@torch.no_grad()
def evaluate(model: CRnet, data: dict, att: torch.Tensor, batch: int = 256) -> dict:
    model.eval()
    preds = {}
    for split in ("seen", "unseen"):
        x = torch.from_numpy(data[f"x_{split}"])
        preds[split] = torch.cat([model(x[i : i + batch], att).argmax(1) for i in range(0, len(x), batch)]).numpy()
    model.train()
    s = per_class_acc(preds["seen"], data["y_seen"])
    u = per_class_acc(preds["unseen"], data["y_unseen"])
    return {"S": s, "U": u, "H": 2 * s * u / (s + u) if s + u > 0 else 0.0}


def train_crnet(config: dict, data_dir: str, max_epochs: int, report_every: int = 0) -> None:
    t_start = time.time()
    data = load_data(data_dir)
    n_seen = data["n_seen"]
    km = KMeans(n_clusters=config["K"], n_init=10, random_state=0).fit(data["att"][:n_seen])
    model = CRnet(km.cluster_centers_.astype(np.float32), hidden=config["hidden"])
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    att = torch.from_numpy(data["att"])
    loader = DataLoader(
        TensorDataset(torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])),
        batch_size=config["batch_size"],
        shuffle=True,
    )
    steps_per_epoch = len(loader)
    metrics, t_first = {"H": 0.0, "U": 0.0, "S": 0.0}, None
    for epoch in range(max_epochs):
        for step, (x, y) in enumerate(loader, 1):
            if t_first is None:
                t_first = time.time()
            g = model(x, att[:n_seen])  # (B, C) over all seen classes
            loss = F.mse_loss(g, F.one_hot(y, n_seen).float())
            loss = (
                loss
                + config["alpha"] * sum(e.weight.square().sum() for e in model.experts)
                + config["beta"] * (model.relation[0].weight.square().sum() + model.relation[2].weight.square().sum())
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            if report_every and step % report_every == 0 and step < steps_per_epoch:  # measurement hook
                tune.report(
                    {
                        **metrics,
                        "epoch": epoch,
                        "epoch_progress": epoch + step / steps_per_epoch,
                        "train_wall_s": time.time() - t_first,
                        "t_trial_start": t_start,
                        "t_first_step": t_first,
                        "threads": torch.get_num_threads(),
                        "loss": loss.item(),
                    }
                )
        metrics = evaluate(model, data, att)
        tune.report(
            {
                **metrics,
                "epoch": epoch + 1,
                "epoch_progress": epoch + 1.0,
                "train_wall_s": time.time() - t_first,
                "t_trial_start": t_start,
                "t_first_step": t_first,
                "threads": torch.get_num_threads(),
                "loss": loss.item(),
            }
        )


def time_eval(data_dir: str, images: int, batch_size: int = 32) -> dict:
    """Seconds per eval image of :func:`evaluate` (1 thread, warm), and the full eval set size."""
    torch.set_num_threads(1)
    data = load_data(data_dir)
    km = KMeans(n_clusters=3, n_init=10, random_state=0).fit(data["att"][: data["n_seen"]])
    model = CRnet(km.cluster_centers_.astype(np.float32))
    att = torch.from_numpy(data["att"])
    n_eval = len(data["y_seen"]) + len(data["y_unseen"])
    half = max(1, images // 2)
    sub = {
        "x_seen": data["x_seen"][:half],
        "y_seen": data["y_seen"][:half],
        "x_unseen": data["x_unseen"][: images - half],
        "y_unseen": data["y_unseen"][: images - half],
    }
    warm = {k: v[:32] for k, v in sub.items()}
    evaluate(model, warm, att)  # warm-up
    t0 = time.perf_counter()
    evaluate(model, sub, att)
    dt = time.perf_counter() - t0
    return {
        "eval_images_timed": images,
        "eval_s_per_image": dt / images,
        "eval_images": n_eval,
        "eval_s_per_epoch": dt / images * n_eval,
        "steps_per_epoch": -(-len(data["y_train"]) // batch_size),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True, help="xlsa17 dataset directory with res101.mat and att_splits.mat")
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32, help="images per step (paper/RN code: 32)")
    p.add_argument("--storage", default=None, help="Ray Tune storage_path (default ~/ray_results)")
    p.add_argument("--budget", type=float, default=None, help="[measurement] TuneConfig(time_budget_s=...)")
    p.add_argument("--report-every", type=int, default=0, help="[measurement] also report every N steps")
    p.add_argument("--out", default=None, help="[measurement] write every trial's reports here as JSON")
    p.add_argument("--time-eval", type=int, default=0, help="[measurement] only time the eval on N images")
    a = p.parse_args()
    if a.time_eval:
        print(json.dumps(time_eval(a.data_dir, a.time_eval, a.batch_size)))
        return

    t_cmd = time.time()
    param_space = {
        "lr": tune.loguniform(1e-6, 1e-3),
        "alpha": tune.loguniform(1e-7, 1e-3),
        "beta": tune.loguniform(1e-6, 1e-2),
        "K": 3,
        "hidden": 2048,
        "batch_size": a.batch_size,  # paper defaults, fixed
    }
    trainable = functools.partial(
        train_crnet, data_dir=str(Path(a.data_dir).resolve()), max_epochs=a.max_epochs, report_every=a.report_every
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric="H",
            mode="max",
            search_alg=OptunaSearch(),
            num_samples=a.num_samples,
            max_concurrent_trials=2,
            time_budget_s=a.budget,
        ),
        run_config=tune.RunConfig(name="handwritten-crnet", storage_path=a.storage),
    )
    results = tuner.fit()
    t_end = time.time()
    if a.out:
        trials = []
        for r in results:
            df = r.metrics_dataframe
            trials.append(
                {
                    "trial_id": r.metrics.get("trial_id"),
                    "error": str(r.error) if r.error else None,
                    "reports": [] if df is None else json.loads(df.to_json(orient="records")),
                }
            )
        Path(a.out).write_text(json.dumps({"t_cmd": t_cmd, "t_end": t_end, "trials": trials}))


if __name__ == "__main__":
    main()
