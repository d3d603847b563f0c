"""TrainConfig: every setting of a training run, checked when it is made.

Field names are the `pixelwave train` flags (`batch_size` is `--batch-size`), so the errors name the flag.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from pixelwave import pretrained
from pixelwave.errors import UserError


@dataclass
class TrainConfig:
    # length
    steps: int = 1000  # optimizer steps in total
    time_limit: float = 0.0  # also stop after this many seconds of training (evaluations excluded); 0 = off.
    # The learning rate's cosine then follows the time too: it reaches min_lr when the time runs out
    batch_size: int = 32  # the global batch; each of N torchrun processes trains on batch_size / N
    # the run
    out: str | None = None  # run directory (default runs/MODEL)
    seed: int = 0  # seeds data order, per-step randomness and samples
    resume: bool = False  # continue the run in `out` from its last checkpoint
    overwrite: bool = False  # delete the run in `out` and start afresh
    device: str = "auto"  # auto | cpu | cuda
    # optimizer
    optimizer: str = "adam"  # adam | adamw
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # on weights of >= 2 dims only
    warmup_steps: int = 100  # linear warm-up to lr
    min_lr: float | None = None  # the cosine decay from lr reaches this at `steps` or at the end of time_limit,
    # whichever comes first (None: lr / 10)
    grad_clip: float = 1.0  # clip the global gradient norm; 0 = off
    ema: float = 0.0  # decay of an exponential moving average of the weights (ema.safetensors); 0 = off
    bf16: bool = False  # bfloat16 autocast for the forward pass; weights, optimizer and loss stay float32
    compile: bool = False  # torch.compile the model
    # checkpoints and logging
    checkpoint_every: int = 500  # steps between checkpoints; 0 = only at the end
    keep_checkpoints: int = 3  # keep the last K
    eval_every: int = 500  # steps between held-out evaluations; 0 = only at the end
    eval_batches: int | None = None  # cap the periodic evaluations at this many batches (the final one is whole)
    sample_every: int = 0  # steps between TensorBoard samples; 0 = only at the end
    samples: int = 16  # images per sample grid; audio: 0 = no clips, else one clip per speaker
    sample_seconds: float = 0.5  # audio: length of each TensorBoard clip
    log_every: int = 50  # steps between log lines and scalars
    no_progress: bool = False  # no progress bar

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise UserError(message)

        def finite(x) -> bool:
            return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

        need(self.steps >= 1, f"--steps must be at least 1, got {self.steps}")
        need(self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}")
        need(finite(self.time_limit) and self.time_limit >= 0,
             f"--time-limit must be >= 0 seconds (0 = off), got {self.time_limit}")
        need(self.device in ("auto", "cpu", "cuda"), f"--device must be auto, cpu or cuda, not {self.device!r}")
        need(self.optimizer in ("adam", "adamw"), f"--optimizer must be adam or adamw, not {self.optimizer!r}")
        need(finite(self.lr) and self.lr > 0, f"--lr must be a positive number, got {self.lr}")
        min_lr = self.final_lr
        need(finite(min_lr) and 0 <= min_lr <= self.lr, f"--min-lr must be in [0, --lr={self.lr}], got {min_lr}")
        need(self.warmup_steps >= 0, f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        need(finite(self.weight_decay) and self.weight_decay >= 0,
             f"--weight-decay must be >= 0, got {self.weight_decay}")
        need(finite(self.grad_clip) and self.grad_clip >= 0,
             f"--grad-clip must be >= 0 (0 = off), got {self.grad_clip}")
        need(finite(self.ema) and 0 <= self.ema < 1, f"--ema must be in [0, 1) (0 = off), got {self.ema}")
        need(finite(self.sample_seconds) and self.sample_seconds > 0,
             f"--sample-seconds must be a positive number, got {self.sample_seconds}")
        for name in ("checkpoint_every", "eval_every", "sample_every", "samples"):
            need(getattr(self, name) >= 0, f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        need(self.keep_checkpoints >= 1, f"--keep-checkpoints must be at least 1, got {self.keep_checkpoints}")
        need(self.log_every >= 1, f"--log-every must be at least 1, got {self.log_every}")
        need(self.eval_batches is None or self.eval_batches >= 1,
             f"--eval-batches must be at least 1, got {self.eval_batches}")
        need(not (self.resume and self.overwrite), "--resume and --overwrite contradict each other: pass one")
        if self.out is not None:
            pretrained.refuse_write(self.out, "--out")

    @property
    def final_lr(self) -> float:
        """Where the cosine decay ends: `min_lr`, or lr / 10 when it is not set."""
        return self.lr / 10 if self.min_lr is None else self.min_lr

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def learning_rate(step: int, lr: float, min_lr: float, warmup: int, steps: int, elapsed: float = 0.0,
                  time_limit: float = 0.0) -> float:
    """The rate of update number `step` (0-based): a linear warm-up over `warmup` steps, and a cosine decay from
    lr to min_lr.

    The decay's progress is the share of `steps` done after the warm-up or, with a `time_limit` (seconds), the
    share of it used (`elapsed` seconds of training), whichever is further: a run that --time-limit stops ends
    at min_lr however many steps fit, and one that reaches `steps` first ends there as without a limit. The
    warm-up ramp scales the decayed rate, so the two join without a jump however much of the time it took.
    """
    progress = 1.0 if step >= steps else max(0.0, (step - warmup) / max(1, steps - warmup))
    if time_limit > 0:
        progress = min(1.0, max(progress, elapsed / time_limit))
    rate = lr if progress == 0 else min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)
    return rate * (step + 1) / warmup if step < warmup else rate
