"""The ``zsltune`` command: ``run`` (a sweep), ``data synth|check``, ``analyze ...``.

User errors (:class:`~zsltune.errors.ZsltuneError`) print one line and exit 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from analysis.cli import add_analyze_parser
from zsltune.errors import run_command
from zsltune.run import add_run_parser


def _data_synth(args: argparse.Namespace) -> int:
    from zsltune.data import synth_fresh, synth_like

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
    from zsltune.data import build_stage, load_dataset

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


def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="generate or check xlsa17 dataset directories")
    dsub = data.add_subparsers(dest="data_cmd", required=True, metavar="{synth,check}")
    s = dsub.add_parser("synth", help="write synthetic res101.mat features (around a real class side or not)")
    s.add_argument("--like", help="a real xlsa17 dataset directory whose att_splits.mat and class lists to use")
    s.add_argument("--out", required=True, help="directory to write")
    s.add_argument("--classes", type=int, default=50, help="fully synthetic: number of classes")
    s.add_argument("--attributes", type=int, default=85, help="fully synthetic: attribute dimension")
    s.add_argument("--images", type=int, default=5000, help="fully synthetic: number of images")
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zsltune", description="Hyperparameter search for zero-shot learning.")
    p.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{run,data,analyze}")
    _add_data(sub)
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
