"""Data sets by name.

Images: `mnist-sample`, `mnist-sample-binary` (embedded), `mnist:DIR`, `cifar10:DIR`, `images:DIR`.
Audio:  `speech-sample`, `flite-sample` (embedded), `wav:DIR`, `vctk:DIR`.
"""

from __future__ import annotations

from pixelwave.data.base import Dataset, ImageDataset
from pixelwave.errors import UserError

IMAGE_NAMES = ("mnist-sample", "mnist-sample-binary", "mnist:DIR", "cifar10:DIR", "images:DIR")
AUDIO_NAMES = ("speech-sample", "flite-sample", "wav:DIR", "vctk:DIR")


def data_kind(name: str) -> str:
    """'image' or 'audio' for a data set name; UserError for a name of neither form."""
    head = name.split(":", 1)[0] + (":DIR" if ":" in name else "")
    if head in IMAGE_NAMES:
        return "image"
    if head in AUDIO_NAMES:
        return "audio"
    raise UserError(f"unknown data set {name!r} (known: {', '.join(IMAGE_NAMES + AUDIO_NAMES)})")


def load(name: str, split: str = "train", **options):
    """Load data set `name` (split 'train' or 'test'). Options go to the image or audio loader."""
    if split not in ("train", "test"):
        raise UserError(f"split must be 'train' or 'test', not {split!r}")
    if data_kind(name) == "image":
        from pixelwave.data.images import load_images

        return load_images(name, split=split, **options)
    from pixelwave.data.audio import load_audio

    return load_audio(name, split=split, **options)


__all__ = ["AUDIO_NAMES", "IMAGE_NAMES", "Dataset", "ImageDataset", "data_kind", "load"]
