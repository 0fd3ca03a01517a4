"""Data sources: what a method trains on, loaded and cut into one stage by a small registry.

A method names its source (``Trainer.data_source``, a registered name or a :class:`DataSource` subclass); the sweep
and the analysis reruns ask the method, load the stage through its source on the driver, and hand the result (the
*bundle*) to every trial through Ray's object store. Neither names a method or a data kind.

The guarantee every source keeps: a ``val`` bundle holds no test row (features, captions) and, for sources that
hand trials paths plus indices instead of pixels, no test index. Big data (images) is never pushed whole through the
object store: such a source's bundle is small (paths, indices, class side), and each node decodes into a local cache
of its own stage split.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from zsltune.data.protocol import Bundle
from zsltune.errors import UnknownNameError


@dataclass(frozen=True, kw_only=True)
class StageRequest:
    """Which dataset and stage to load, as the sweep's options give them."""

    dataset: str
    stage: str
    data_root: str | None = None
    attributes: str = "att"
    seed: int = 0  # the data seed: synthetic data and the validation hold-out
    skip_bad_images: bool = False  # image sources: leave corrupt images out (recorded) instead of stopping
    image_size: int | None = None  # image sources: the decoded cache's side; None: synthetic images' own, else 256
    recall_at: str | None = None  # retrieval: a preset (cub, cars, sop) or K,K,...; None: by the dataset's name


@dataclass(frozen=True, kw_only=True)
class DataInfo:
    """What the driver's checks need of a loaded bundle (sizes, class counts), whatever the source."""

    dataset: str
    stage: str
    synthetic: bool
    n_seen: int  # training (seen) classes of the stage
    num_classes: int
    n_train: int  # training images
    feature_dim: int = 0  # 0 where the method sees pixels
    attribute_dim: int = 0


class DataSource(ABC):
    """Loads one stage for a method. Subclass, set ``name``, implement :meth:`load` (and :meth:`info`)."""

    name: ClassVar[str] = ""
    #: what the bundle holds, in words, for progress lines ("synthetic features", "images")
    kind: ClassVar[str] = ""
    #: whether the source decodes raw images (it honours StageRequest.image_size and recall_at)
    images: ClassVar[bool] = False

    @abstractmethod
    def load(self, req: StageRequest) -> Bundle:
        """The bundle every trial of the stage receives (picklable; numpy arrays share zero-copy)."""

    def directory(self, req: StageRequest) -> Path | None:
        """The folder the stage was read from (after :meth:`load`: generated data exist by then); None: unknown."""
        return None

    def provenance(self, req: StageRequest, bundle: Any) -> dict[str, Any]:
        """What the stage was read from, for ``provenance.json``: the folder's data files by sha256 (subfolders by
        their file list), and for synthetic data the generator's version, knobs and seed."""
        from zsltune import provenance

        d = self.directory(req)
        out: dict[str, Any] = provenance.data_record(d) if d is not None else {"path": None}
        out["dataset"] = req.dataset
        if self.info(bundle).synthetic:
            out["synthetic"] = provenance.synthetic_record(Path(req.dataset).name, seed=req.seed, images=self.images)
        return out

    def info(self, bundle: Any) -> DataInfo:
        return DataInfo(
            dataset=bundle.dataset,
            stage=bundle.stage,
            synthetic=bool(bundle.synthetic),
            n_seen=int(bundle.n_seen),
            num_classes=int(bundle.num_classes),
            n_train=len(bundle.y_train),
            feature_dim=int(getattr(bundle, "feature_dim", 0)),
            attribute_dim=int(getattr(bundle, "attribute_dim", 0)),
        )


_SOURCES: dict[str, type[DataSource]] = {}
S = TypeVar("S", bound=type[DataSource])


def register_source(name: str) -> Callable[[S], S]:
    """Class decorator: ``@register_source("features")`` lets a method name its source."""

    def deco(cls: S) -> S:
        if name in _SOURCES and _SOURCES[name] is not cls:
            raise ValueError(f"data source '{name}' is already registered by {_SOURCES[name].__qualname__}")
        cls.name = name
        _SOURCES[name] = cls
        return cls

    return deco


def get_source(source: str | type[DataSource] | DataSource) -> DataSource:
    """A source instance from a registered name, a class or an instance."""
    if isinstance(source, DataSource):
        return source
    if isinstance(source, type) and issubclass(source, DataSource):
        return source()
    if source not in _SOURCES:
        raise UnknownNameError(f"unknown data source '{source}'; valid: {', '.join(sorted(_SOURCES))}")
    return _SOURCES[source]()


def list_sources() -> list[str]:
    return sorted(_SOURCES)


@register_source("features")
class Features(DataSource):
    """Precomputed image features (``res101.mat``; synthetic around the real class side where it is missing)."""

    kind = "features"
    text: ClassVar[bool] = False  # also per-image captions as token arrays

    def load(self, req: StageRequest) -> Bundle:
        from zsltune.data import load_stage

        return load_stage(
            req.dataset,
            req.stage,  # type: ignore[arg-type]
            data_root=req.data_root,
            attributes=req.attributes,  # type: ignore[arg-type]
            seed=req.seed,
            text=True if self.text else None,
        )

    def directory(self, req: StageRequest) -> Path | None:
        from zsltune.data import resolve_dataset

        return resolve_dataset(req.dataset, data_root=req.data_root, seed=req.seed, quiet=True, captions=self.text)


@register_source("features+text")
class FeaturesText(Features):
    """Features plus per-image captions (``text_c10``) as token arrays; synthetic captions for synthetic features.

    A real dataset without captions is an error naming the folder and the fix, never a silent fallback.
    """

    kind = "features + per-image captions"
    text = True


@register_source("images")
class Images(DataSource):
    """Raw images in the CUB-200-2011 layout, zero-shot retrieval split (training classes / unseen evaluation
    classes); the bundle is paths and indices (:class:`zsltune.data.image_source.ImageStage`), pixels stay in each
    node's decoded cache."""

    kind = "images"
    images = True

    def load(self, req: StageRequest) -> Bundle:
        from zsltune.data.image_source import load_image_stage

        return load_image_stage(req, skip_bad=req.skip_bad_images)

    def directory(self, req: StageRequest) -> Path | None:
        from zsltune.data.image_source import resolve_images

        return resolve_images(req.dataset, req.data_root, req.seed)[0]

    def info(self, bundle: Any) -> DataInfo:
        return DataInfo(
            dataset=bundle.dataset,
            stage=bundle.stage,
            synthetic=bundle.synthetic,
            n_seen=bundle.n_seen,
            num_classes=bundle.num_classes,
            n_train=len(bundle.y_train),
        )


@register_source("xlsa17-images")
class Xlsa17Images(DataSource):
    """An xlsa17 folder's stages over raw images (``res101.mat``'s ``image_files`` mapped onto ``DATASET/images``);
    the bundle is paths and labels (:class:`zsltune.data.image_source.AttributeImageStage`)."""

    kind = "images (xlsa17 splits)"
    images = True

    def load(self, req: StageRequest) -> Bundle:
        from zsltune.data.image_source import load_xlsa17_image_stage

        return load_xlsa17_image_stage(req, skip_bad=req.skip_bad_images)

    def directory(self, req: StageRequest) -> Path | None:
        from zsltune.data.image_source import resolve_parts_images

        return resolve_parts_images(req.dataset, req.data_root, req.seed)
