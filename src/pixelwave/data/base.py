"""What the training loop, `eval` and the CLI need from any data set (`Dataset`), and the image data set.

A data set lives in memory and hands out batches as dicts whose keys are the keyword arguments of the model's
`forward` (= `log_prob(..., reduce=True)`): images give {"x", "y"}; audio gives {"a", "speaker", "cond"}; a model
takes the keys it declares (`model.inputs`). `dims` is the number of modelled values per example, so bits/dim =
-sum(log p) / (N * dims * ln 2). `ImageDataset` is below; `AudioDataset` is in data/audio.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch


class Dataset(Protocol):
    name: str
    kind: str  # "image" or "audio": the `data_kind` of the models that can learn it
    levels: int  # values per dimension: pixel levels or mu-law codes

    @property
    def dims(self) -> int: ...  # modelled values per example

    def __len__(self) -> int: ...

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> dict: ...

    def info(self) -> dict: ...  # JSON description saved with a run (data.json)


@dataclass
class ImageDataset:
    """Images as integer levels. x: uint8 (N, C, H, W) in [0, levels); y: int64 (N,) or None."""

    name: str
    x: torch.Tensor
    y: torch.Tensor | None
    levels: int
    num_classes: int | None = None
    class_names: list[str] | None = None
    kind: str = field(default="image", init=False)

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def channels(self) -> int:
        return self.x.shape[1]

    @property
    def size(self) -> tuple[int, int]:
        return (self.x.shape[2], self.x.shape[3])

    @property
    def dims(self) -> int:
        return self.x.shape[1] * self.x.shape[2] * self.x.shape[3]

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """The examples at `idx` as model inputs: {"x": LongTensor (B, C, H, W), "y": LongTensor (B,) | None}."""
        y = self.y[idx].long() if self.y is not None else None
        return {"x": self.x[idx].long(), "y": y}

    def info(self) -> dict:
        """JSON-serialisable description saved with a run (so sample/complete know size and classes; `complete`
        takes the label counts as the prior of its class posterior)."""
        counts = None
        if self.y is not None and self.num_classes:
            counts = torch.bincount(self.y.long(), minlength=self.num_classes).tolist()
        return {"kind": self.kind, "name": self.name, "channels": self.channels, "size": list(self.size),
                "levels": self.levels, "num_classes": self.num_classes, "class_names": self.class_names,
                "class_counts": counts}
