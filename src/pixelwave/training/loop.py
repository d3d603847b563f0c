"""One training loop for every pixelwave model, read top to bottom (after nanoGPT's train.py).

The loop does not know which model it trains: it calls `model(**batch)` for log p(example) in nats, (B,),
with the batch entries the model declares (`model.inputs`), and minimises bits/dim = -mean(log p) / (dims ln 2).
Audio has one dim per sample, so its logs and TensorBoard tags say bits per sample.

Distributed (training/distributed.py): every epoch has one global permutation drawn from (seed, epoch); step s
takes the next batch_size indices of it and rank r trains on its slice, so the global batch -- and any
randomness `dataset.batch` draws, from a generator seeded by (seed, s) -- is the same for any number of
processes. Rank 0 alone logs, shows progress, writes files and holds the run lock (training/runlock.py).

Reproducibility: the global torch RNG is reseeded from (seed, step, rank) before every step, the learning rate
is a function of the step, and the data position is (epoch, offset), so a checkpoint (training/rundir.py) holds
all there is to restore: on CPU a run killed at any moment and resumed ends with bit-identical weights. Under
--time-limit the learning rate also follows the training time so far, which the checkpoint holds as well: a
resumed run continues the schedule where it stopped (only the clock itself does not repeat).

Stopping: SIGTERM or SIGINT finishes the current step, writes a checkpoint, says so and exits with 128 + the
signal number (143 for SIGTERM, 130 for SIGINT); a second SIGINT stops at once. A non-finite loss or gradient
stops the run with `NonFiniteLoss` (a UserError: one line, exit code 2) naming the step, which is never saved.
"""

from __future__ import annotations

import copy
import math
import signal
import time
from collections import deque

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from pixelwave.compat import check_compatible
from pixelwave.distributions import bits_per_dim
from pixelwave.errors import UserError
from pixelwave.training import distributed, rundir
from pixelwave.training.config import TrainConfig, learning_rate
from pixelwave.training.evaluation import evaluate, log_samples, model_inputs, to_device
from pixelwave.training.seeds import seed_of

# The clock of the training time (evaluations and checkpoints excluded) that --time-limit and the learning rate
# under it follow; a test swaps in a fake one.
clock = time.perf_counter


class NonFiniteLoss(UserError):
    """Training produced a NaN/inf loss or gradient; the step was not applied or saved."""


def train(config: TrainConfig, model: torch.nn.Module, train_set, test_set=None) -> dict:
    """Train `model` on `train_set` as `config` says; return the final metrics (rank 0 also prints them)."""
    procs = distributed.start(config.device)
    writer, stop, lock = None, StopSignals(), None
    try:
        # ---------------------------------------------------------------- checks, then the run directory
        check_data(config, model, train_set, test_set, procs.world)
        info, dims, device = train_set.info(), train_set.dims, procs.device
        out, saved, lock = rundir.open_run(config, model, info, procs)  # rank 0 holds the run's lock from here

        def log(message: str) -> None:
            if procs.master:
                tqdm.write(message)

        # ---------------------------------------------------------------- model, optimizer, EMA, restored state
        raw = model.to(device).train()
        decay = [p for p in raw.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in raw.parameters() if p.requires_grad and p.dim() < 2]
        optimizer = (torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam)(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr)
        ema = copy.deepcopy(raw).requires_grad_(False).eval() if config.ema > 0 else None
        run = rundir.RunState()
        if saved is not None:
            for note in saved["notes"]:
                log(note)
            run = rundir.restore(saved, config, raw, optimizer, ema)
            log(f"resuming {out} from step {run.step}" + (f"; changed: {', '.join(run.changed)}" if run.changed
                                                          else ""))
        train_model = torch.compile(raw) if config.compile else raw
        if procs.ddp:
            # static_graph: every step uses the same parameters. It also tolerates parameters that never get a
            # gradient, where plain DDP stops with "Expected to have finished reduction".
            train_model = DDP(train_model, device_ids=[device.index] if device.type == "cuda" else None,
                              static_graph=True)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16)
        per_rank = config.batch_size // procs.world
        audio = model.data_kind == "audio"
        unit = "sample" if audio else "dim"  # audio: one dim per sample, so bits/dim is bits per sample
        bound = "<= " if model.is_bound else ""  # PixelVAE: an ELBO, not the likelihood
        log(describe(model, raw, info, train_set, config, procs, out))
        if config.bf16 and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            log("note: this CPU has no native bfloat16 (AVX512-BF16 / AMX): --bf16 runs emulated and is likely "
                "slower than float32")

        def save(step: int, lr: float):  # lr: the rate of the last step
            return rundir.save_run(out, step, raw, optimizer, ema, run, config, info, procs, lr)

        def run_eval(step: int, final: bool) -> None:
            if test_set is None or len(test_set) == 0:
                return
            for name, m in (("test", raw), ("test_ema", ema)):
                if m is not None:
                    result = evaluate(m, test_set, per_rank, device,
                                      max_batches=None if final else config.eval_batches)
                    run.metrics[f"{name}_bits_per_dim"] = result["bits_per_dim"]
                    run.metrics[f"{name}_examples"] = result["examples"]
                    run.metrics[f"{name}_nats_per_example"] = result["nats_per_example"]
                    if writer:
                        writer.add_scalar(f"{name.replace('_', '/')}/bits_per_{unit}", result["bits_per_dim"], step)
            ema_note = f" (EMA {run.metrics['test_ema_bits_per_dim']:.4f})" if ema is not None else ""
            log(f"step {step}: test {bound}{run.metrics['test_bits_per_dim']:.4f} bits/{unit}{ema_note} "
                f"over {run.metrics['test_examples']:,} examples")

        def draw_samples(step: int) -> None:
            if writer:
                log_samples(writer, ema if ema is not None else raw, config, info, test_set, step, device)

        if procs.master:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops the events a killed run logged after its last checkpoint.
            writer = SummaryWriter(str(out / "tb"), purge_step=run.step or None)

        # ---------------------------------------------------------------- the loop
        stop.install()
        perm, perm_epoch = None, -1
        saved_step = run.step if saved is not None else -1
        window_seconds, window_examples = 0.0, 0
        recent = run.recent = deque(run.recent, maxlen=config.log_every)  # train bits/dim of the last steps
        bar = tqdm(total=config.steps, initial=run.step, unit="step", dynamic_ncols=True,
                   disable=not procs.master or config.no_progress)
        while run.step < config.steps:
            t0 = clock()
            step = run.step
            if run.offset + config.batch_size > len(train_set):  # drop the incomplete tail: a new epoch
                run.epoch, run.offset = run.epoch + 1, 0
            if perm_epoch != run.epoch:
                order = torch.Generator().manual_seed(seed_of("order", config.seed, run.epoch))
                perm, perm_epoch = torch.randperm(len(train_set), generator=order), run.epoch
            idx = perm[run.offset:run.offset + config.batch_size]  # the global batch
            batch = train_set.batch(idx, torch.Generator().manual_seed(seed_of("batch", config.seed, step)))
            lo = procs.rank * per_rank
            batch = {k: v[lo:lo + per_rank] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            torch.manual_seed(seed_of("step", config.seed, step, procs.rank))  # dropout & co: a function of the step

            with autocast:
                log_p = train_model(**to_device(model_inputs(raw, batch), device))  # (B / world,) nats
            loss = bits_per_dim(log_p.float(), dims)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), config.grad_clip)
            else:
                grad_norm = torch.nn.utils.get_total_norm([p.grad for p in raw.parameters() if p.grad is not None])
            # One sync a step: the mean loss, the gradient norm, the training time so far (the mean over the ranks,
            # so all of them agree on it) and whether any rank was told to stop.
            elapsed = run.train_seconds + clock() - t0
            summed = (elapsed / procs.world, stop.caught == signal.SIGTERM, stop.caught == signal.SIGINT)
            stat = torch.stack([loss.detach() / procs.world, grad_norm.detach().float() / procs.world,
                                *(torch.tensor(float(value), device=device) for value in summed)])
            train_bpd, grad_norm, elapsed, term, intr = procs.sum(stat).tolist()
            if not (math.isfinite(train_bpd) and math.isfinite(grad_norm)):
                what, value = ("loss", train_bpd) if not math.isfinite(train_bpd) else ("gradient norm", grad_norm)
                last = rundir.latest_checkpoint(out)
                raise NonFiniteLoss(
                    f"training diverged: the {what} is {value} at step {step + 1}; that step was not applied or "
                    f"saved. " + (f"The last good checkpoint is {last}" if last else "No checkpoint was written yet")
                    + " (try a lower --lr or --grad-clip)")
            # Set only now that the ranks agree on the time: under --time-limit the step that uses the time up
            # runs at --min-lr.
            lr = learning_rate(step, config.lr, config.final_lr, config.warmup_steps, config.steps, elapsed,
                               config.time_limit)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.step()
            if ema is not None:
                update_ema(ema, raw, config.ema)
            seconds = clock() - t0
            run.advance(config.batch_size, seconds)
            step = run.step
            window_seconds, window_examples = window_seconds + seconds, window_examples + config.batch_size
            recent.append(train_bpd)
            bar.update(1)

            if step % config.log_every == 0 or step == config.steps:
                mean_bpd = sum(recent) / len(recent)
                rate = window_examples / max(window_seconds, 1e-9)
                run.metrics.update(train_bits_per_dim=mean_bpd, examples_per_second=rate, dims_per_second=rate * dims)
                bar.set_postfix(bpd=f"{mean_bpd:.4f}", lr=f"{lr:.2e}")
                if writer:
                    for tag, value in ((f"train/bits_per_{unit}", mean_bpd), ("train/grad_norm", grad_norm),
                                       ("lr", lr), ("throughput/examples_per_second", rate),
                                       ("throughput/dims_per_second", rate * dims)):
                        writer.add_scalar(tag, value, step)
                log(f"step {step}/{config.steps} | train {mean_bpd:.4f} bits/{unit} | lr {lr:.2e} | "
                    + (f"{rate * dims:,.0f} samples/s" if audio else f"{rate:,.0f} examples/s"))
                window_seconds, window_examples = 0.0, 0
            if step < config.steps and config.eval_every and step % config.eval_every == 0:
                run_eval(step, final=False)
            if step < config.steps and config.sample_every and step % config.sample_every == 0:
                draw_samples(step)
            stopping = term > 0 or intr > 0
            if stopping or (step < config.steps and config.checkpoint_every and step % config.checkpoint_every == 0):
                where = save(step, lr)
                saved_step = step
            if stopping:
                code, name = (143, "SIGTERM") if term > 0 else (130, "SIGINT")
                bar.close()
                log(f"stopped by {name} after step {step}: checkpoint written to {where}; continue with --resume "
                    f"(exit code {code})")
                procs.barrier()
                raise SystemExit(code)
            if config.time_limit and elapsed >= config.time_limit and step < config.steps:
                log(f"--time-limit: {config.time_limit:g} s of training reached after step {step}")
                break
        bar.close()

        # ---------------------------------------------------------------- the end: evaluate, sample, save, summarise
        run_eval(run.step, final=True)
        draw_samples(run.step)
        if run.step != saved_step:  # the loop ran a step since the last save, so `lr` is its rate
            save(run.step, lr)
        procs.barrier()
        metrics = run.summary(out, dims)
        test = metrics.get("test_bits_per_dim")
        test_note = "" if test is None else f" | test {bound}{test:.4f} bits/{unit}"
        if ema is not None and test is not None:
            test_note += f" (EMA {metrics['test_ema_bits_per_dim']:.4f})"
        rate = metrics["examples_per_second"]
        log(f"done: step {run.step} | train {metrics['train_bits_per_dim']:.4f} bits/{unit}{test_note} | "
            + (f"{rate * dims:,.0f} samples/s" if audio else f"{rate:,.0f} examples/s") + f" | run in {out}")
        # Every rank has finished its work before any destroys the group (`finally`), so none tears down while
        # another still runs (a rank aborted once, SIGABRT, at the end of a 2-rank CI run; its message was not
        # kept, so this is a precaution, not a proven fix). Error paths skip it: a peer may never arrive.
        procs.barrier()
        return metrics
    finally:
        stop.restore()
        if writer is not None:
            writer.close()
        if lock is not None:
            lock.release()
        procs.close()


class StopSignals:
    """SIGTERM / SIGINT set `caught`, and the loop stops after the step it is in; a second SIGINT stops at once."""

    def __init__(self):
        self.caught = 0
        self._previous = {}

    def _on_signal(self, signum, frame):  # no printing here: the signal may land inside a print
        if self.caught == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.caught = signum

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: leave signals alone
                break

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def describe(model, raw, info: dict, train_set, config: TrainConfig, procs, out) -> str:
    """The first line a run prints: what trains on what, where."""
    dims, per_rank = train_set.dims, config.batch_size // procs.world
    examples = (f"samples ({dims / info['sample_rate']:.3g} s)" if model.data_kind == "audio" else "dims")
    shared = f" ({per_rank} on each of {procs.world} processes)" if procs.world > 1 else ""
    return (f"training {model.model_name} ({sum(p.numel() for p in raw.parameters()):,} parameters) on "
            f"{info.get('name')}: {len(train_set):,} examples of {dims:,} {examples}, batch {config.batch_size}"
            f"{shared}, {procs.device.type}; run directory {out}")


def check_data(config: TrainConfig, model, train_set, test_set, world: int) -> None:
    """The data must fit the model and the batch (before anything is written)."""
    if config.batch_size % world:
        raise UserError(f"--batch-size {config.batch_size} must be divisible by the number of processes ({world})")
    if len(train_set) == 0:
        raise UserError("the training set is empty")
    if config.batch_size > len(train_set):
        raise UserError(f"--batch-size {config.batch_size} is larger than the training set ({len(train_set)} "
                        f"examples)")
    for ds in (train_set, test_set):
        if ds is not None:
            check_compatible(model, ds, train_set.info())
