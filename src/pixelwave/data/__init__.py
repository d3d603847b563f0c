"""Data sets by name: `mnist-sample`, `mnist-sample-binary`, `mnist:DIR`, `cifar10:DIR`, `images:DIR`, ..."""

from pixelwave.data.base import ImageDataset

__all__ = ["ImageDataset"]
