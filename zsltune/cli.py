"""The ``zsltune`` command: ``run`` (a sweep), ``data synth|check``, ``analyze ...``.

User errors (:class:`~zsltune.errors.ZsltuneError`) print one line and exit 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from zsltune.analysis.cli import add_analyze_parser
from zsltune.errors import run_command
from zsltune.run import add_run_parser


def _images_arg(text: str) -> int | str:
    """``--images``: a number of feature rows (features), or an image kind (``retrieval``, ``parts``)."""
    from zsltune.data.synth_images import KINDS

    if text in KINDS:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of images (synthetic features) or an image kind ({', '.join(KINDS)}), got {text!r}"
        ) from None


def _synth_images(args: argparse.Namespace) -> int:
    from zsltune.data.synth_images import synth_images

    if args.images == "parts" and args.like is None:
        from zsltune.errors import ConfigError

        raise ConfigError("--images parts: pass --like DATASET_DIR, the class side (att_splits.mat) to draw from")
    out = synth_images(
        args.out, kind=args.images, classes=args.classes, per_class=args.per_class, size=args.size, seed=args.seed,
        like=args.like if args.images == "parts" else None,
    )  # fmt: skip
    n = len((out / "images.txt").read_text().splitlines())
    print(f"wrote {n} {args.images} images to {out} (CUB-200-2011 layout)")
    return 0


def _data_synth(args: argparse.Namespace) -> int:
    from zsltune.data import synth_fresh, synth_like

    if isinstance(args.images, str):
        return _synth_images(args)
    if args.like is not None:
        out = synth_like(
            args.like,
            args.out,
            seed=args.seed,
            difficulty=args.difficulty,
            feature_dim=args.dim,
            captions=args.captions,
        )
    else:
        out = synth_fresh(
            args.out,
            classes=args.classes,
            attributes=args.attributes,
            images=args.images,
            seed=args.seed,
            difficulty=args.difficulty,
            feature_dim=args.dim,
            captions=args.captions,
        )
    print(f"wrote {out / 'res101.mat'}" + (f" and {out / 'text_c10'}" if args.captions else ""))
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from zsltune.data import build_stage, load_dataset

    if (Path(args.dir).expanduser() / "images.txt").is_file():
        from zsltune.data.image_source import load_image_stage
        from zsltune.data.sources import StageRequest

        st = load_image_stage(StageRequest(dataset=args.dir, stage=args.stage))
        print(json.dumps(image_summary(st), indent=2))
        return 0

    ds = load_dataset(args.dir, attributes=args.attributes)
    summary = build_stage(ds, args.stage, seed=args.seed).summary()
    summary["images_total"] = ds.num_images
    summary["splits"] = {
        "trainval": int(ds.trainval.size),
        "test_seen": int(ds.test_seen.size),
        "test_unseen": int(ds.test_unseen.size),
    }
    print(json.dumps(summary, indent=2))
    return 0


def image_summary(st: object) -> dict:
    """Images and classes per split of an image stage (``zsltune data check`` on a CUB-layout folder)."""
    return {
        "dataset": st.dataset,  # type: ignore[attr-defined]
        "stage": st.stage,  # type: ignore[attr-defined]
        "synthetic": st.synthetic,  # type: ignore[attr-defined]
        "train": {"images": len(st.train_files), "classes": len(st.train_classes)},  # type: ignore[attr-defined]
        "eval": {"images": len(st.eval_files), "classes": len(st.eval_classes)},  # type: ignore[attr-defined]
        "cache_resolution": st.resolution,  # type: ignore[attr-defined]
    }


def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="generate or check xlsa17 dataset directories")
    dsub = data.add_subparsers(dest="data_cmd", required=True, metavar="{synth,check}")
    s = dsub.add_parser("synth", help="write synthetic res101.mat features (around a real class side or not)")
    s.add_argument("--like", help="a real xlsa17 dataset directory whose att_splits.mat and class lists to use")
    s.add_argument("--out", required=True, help="directory to write")
    s.add_argument("--classes", type=int, default=50, help="fully synthetic: number of classes")
    s.add_argument("--attributes", type=int, default=85, help="fully synthetic: attribute dimension")
    s.add_argument(
        "--images",
        type=_images_arg,
        default=5000,
        help="fully synthetic features: number of images; or an image kind: 'retrieval' (objects on clutter, "
        "for DeML) or 'parts' (attribute-driven parts around --like's class side, for SGMA)",
    )
    s.add_argument("--per-class", type=int, default=60, help="images: images per class (default 60)")
    s.add_argument("--size", type=int, default=64, help="images: side in pixels (default 64)")
    s.add_argument("--dim", type=int, default=2048, help="feature dimension (ResNet-101: 2048)")
    s.add_argument("--difficulty", type=float, default=1.0, help="scales per-image jitter and noise")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--captions", action="store_true", help="also write synthetic per-image captions (text_c10 layout)")
    s.set_defaults(func=_data_synth)
    c = dsub.add_parser("check", help="load a dataset directory and print a JSON summary")
    c.add_argument("dir")
    c.add_argument("--stage", choices=("val", "test"), default="val")
    c.add_argument("--attributes", choices=("att", "original_att", "sent"), default="att")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=_data_check)


def _baseline(args: argparse.Namespace) -> int:
    from zsltune.baseline import run_baseline

    out = run_baseline(
        args.name, args.dataset, stage=args.stage, data_root=args.data_root, seed=args.seed,
        data_seed=args.data_seed, variant=args.variant,
    )  # fmt: skip
    print(json.dumps({"baseline": args.name, "dataset": args.dataset, "stage": args.stage, **out}, indent=2))
    return 0


def _add_baseline(sub: argparse._SubParsersAction) -> None:
    from zsltune.baseline import BASELINES

    b = sub.add_parser("baseline", help="run a reference baseline (ESZSL, softmax, f-CLSWGAN, ridge) on a stage")
    b.add_argument("name", choices=sorted(BASELINES))
    b.add_argument("--dataset", default="demo", help="demo, a dataset under --data-root, or a directory")
    b.add_argument("--data-root", default=None)
    b.add_argument(
        "--stage", choices=("val", "test"), default="val",
        help="test: every knob chosen on val first, then frozen (the test stage is loaded only then)",
    )  # fmt: skip
    b.add_argument("--variant", default=None, help="clswgan: cpu (default, ~15 min on AWA1 on 2 cores) or paper")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--data-seed", type=int, default=0)
    b.set_defaults(func=_baseline)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zsltune", description="Hyperparameter search for zero-shot learning.")
    p.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{run,data,baseline,analyze}")
    _add_data(sub)
    _add_baseline(sub)
    add_run_parser(sub)
    add_analyze_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args.func, args, debug=args.debug)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
