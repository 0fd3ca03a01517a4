"""The middle layer of the methods that train on raw images (DeML, SGMA): the node's decoded cache of the training
split, training crops (random offset, optional flip) and centre-cropped evaluation batches, in [-1, 1].

Pixels stay in a memory-mapped uint8 cache (:func:`zsltune.data.images.image_cache`, one copy per node); a batch is
read in row order, cropped on the device and normalised there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from zsltune.data.images import CachedImages
from zsltune.data.protocol import ImageBundle
from zsltune.methods.base import Trainer

ImageT = TypeVar("ImageT", bound=ImageBundle)


class ImageTrainer(Trainer[ImageT]):
    """A trainer on an image stage: ``pixels`` (N, R, R, 3) uint8 and ``labels`` (N,) of its training split; the
    config's ``crop`` is the side of a training crop and of the evaluation centre crop."""

    #: random horizontal flips of training crops (DeML's augmentation; SGMA keeps a part's side)
    flip: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any], data: ImageT, **kw: Any) -> None:
        super().__init__(config, data, **kw)  # device, seed, max_epochs, knobs, iteration_steps: see Trainer
        cache, y = data.cached("train")
        self.pixels, self.labels = cache.pixels, np.asarray(y)  # memory-mapped (N, R, R, 3) uint8, the node's copy
        self._eval: dict[str, tuple[CachedImages, np.ndarray]] = {}  # evaluation splits, opened at first use

    def images(self, rows: np.ndarray, *, train: bool) -> torch.Tensor:
        """Training images at ``rows`` (in that order) as float (B, 3, crop, crop): :meth:`crop` of each."""
        srt = np.sort(rows)
        x = self.pixels[srt]  # a memory map reads fastest in row order
        if not np.array_equal(srt, rows):
            x = x[np.argsort(np.argsort(rows))]
        return self.crop(torch.from_numpy(np.ascontiguousarray(x)), train=train)

    def crop(self, x: torch.Tensor, *, train: bool) -> torch.Tensor:
        """uint8 (B, R, R, 3) -> float (B, 3, crop, crop) in [-1, 1]: in training a random offset per image (and a
        random flip where :attr:`flip`), otherwise the centre crop."""
        x = x.to(self.device)
        b, r = x.shape[0], x.shape[1]
        crop = min(int(self.config["crop"]), r)
        # with flips an offset is drawn even when the crop is the whole image: DeML's seeded stream does so
        if train and (crop < r or self.flip):
            off = torch.randint(0, r - crop + 1, (b, 2), generator=self.generator, device=self.device)
        else:
            off = torch.full((b, 2), (r - crop) // 2, device=self.device)
        ar = torch.arange(crop, device=self.device)
        ys, xs = off[:, 0, None] + ar, off[:, 1, None] + ar  # (B, crop)
        if train and self.flip:
            flip = torch.rand(b, generator=self.generator, device=self.device) < 0.5
            xs = torch.where(flip[:, None], xs.flip(1), xs)
        out = x[torch.arange(b, device=self.device)[:, None, None], ys[:, :, None], xs[:, None, :]]  # (B, c, c, 3)
        return out.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    def cached_split(self, split: str) -> tuple[CachedImages, np.ndarray]:
        """The decoded cache of an evaluation ``split`` and its labels, opened once (finding it stats every file)."""
        if split not in self._eval:
            self._eval[split] = self.data.cached(split)
        return self._eval[split]

    def eval_batches(self, pixels: np.ndarray, batch: int) -> Iterator[torch.Tensor]:
        """Cached images (N, R, R, 3) uint8 as centre-cropped float batches (B, 3, crop, crop), every module in
        eval mode (:meth:`~zsltune.methods.base.Trainer.fit_epoch` switches them back)."""
        for m in self.stateful().values():
            if isinstance(m, torch.nn.Module):
                m.eval()
        for s in range(0, pixels.shape[0], batch):
            yield self.crop(torch.from_numpy(np.array(pixels[s : s + batch])), train=False)
