"""Exact held-out likelihood over a whole data set, and the samples a run shows in TensorBoard."""

from __future__ import annotations

import torch
import torch.distributed as dist

from pixelwave.distributions import bits_per_dim
from pixelwave.runtime import full_float32
from pixelwave.training.seeds import seed_of


def model_inputs(model, batch: dict) -> dict:
    """The batch entries the model takes (`model.inputs`): labels or speakers it was not built for are left out,
    so an unconditional model learns p(x) from labelled data. An audio crop's frames of context ("context",
    present only when not 0) go with its frames."""
    inputs = {k: batch[k] for k in model.inputs}
    if batch.get("context") and "cond" in inputs:
        inputs["context"] = batch["context"]
    return inputs


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
@full_float32()
def evaluate(model: torch.nn.Module, dataset, batch_size: int, device: str | torch.device = "cpu", *,
             max_batches: int | None = None) -> dict:
    """Exact held-out likelihood: the sum of log p over every example / (N * dims * ln 2), in float64.

    Inside a torch.distributed group the batches are shared out over the ranks and the sums all-reduced, so
    every rank must call it. Returns {"bits_per_dim", "nats_per_example", "examples"}.
    """
    device = torch.device(device)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    starts = list(range(0, len(dataset), batch_size))[:max_batches]
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of log p, examples)
    for start in starts[rank::world]:
        idx = torch.arange(start, min(start + batch_size, len(dataset)))
        batch = dataset.batch(idx, torch.Generator().manual_seed(0))  # fixed: the same crops every time
        log_p = model(**to_device(model_inputs(model, batch), device))  # (B,)
        totals[0] += log_p.double().sum()
        totals[1] += len(idx)
    if world > 1:
        dist.all_reduce(totals)
    model.train(was_training)
    total, n = totals.tolist()
    n = int(n)
    if n == 0:
        return {"bits_per_dim": float("nan"), "nats_per_example": float("nan"), "examples": 0}
    mean = torch.tensor(total / n, dtype=torch.float64)
    return {"bits_per_dim": float(bits_per_dim(mean, dataset.dims)), "nats_per_example": -total / n, "examples": n}


@torch.no_grad()
def log_samples(writer, model, config, info: dict, test_set, step: int, device: torch.device) -> None:
    """Images: a grid of `config.samples` samples (a class a column). Audio: one short clip per speaker (or
    one); a mel-conditioned model re-speaks held-out utterances."""
    if not config.samples:
        return
    generator = torch.Generator().manual_seed(seed_of("samples", config.seed))
    if model.data_kind == "audio":
        return _log_clips(writer, model, config, info, test_set, step, device, generator)
    import numpy as np

    from pixelwave.viz import image_grid

    classes = model.num_classes
    y = torch.arange(config.samples, device=device) % classes if classes else None
    x = model.sample(config.samples, size=tuple(info["size"]), y=y, generator=generator)  # (n, C, H, W)
    grid = np.asarray(image_grid(x, info["levels"], nrow=classes, pad=1))  # uint8 (H, W) or (H, W, 3)
    writer.add_image("samples", grid, step, dataformats="HW" if grid.ndim == 2 else "HWC")


def _log_clips(writer, model, config, info, test_set, step, device, generator) -> None:
    rate = info["sample_rate"]
    steps = max(1, round(config.sample_seconds * rate))
    n = model.num_speakers or 1
    speaker = torch.arange(n, device=device) if model.num_speakers else None
    cond, names = None, info.get("speakers") or [str(i) for i in range(n)]
    if model.cond_channels is not None:
        if test_set is None or len(test_set) == 0:
            return
        # Per clip the longest test utterance of that speaker (or of all), all cut to the shortest.
        lengths, by_speaker = test_set.lengths, test_set.speaker is not None and model.num_speakers
        pick = []
        for s in range(n):
            mine = torch.where(test_set.speaker == s, lengths, -1) if by_speaker else lengths  # (U,)
            pick.append(int(mine.argmax()) if int(mine.max()) > 0 else int(lengths.argmax()))
        utts = [test_set.utterance(i) for i in pick]
        frames = min([-(-steps // model.hop_length)] + [u["cond"].shape[-1] for u in utts])
        if frames < 1:
            return
        cond = torch.cat([u["cond"][..., :frames] for u in utts]).to(device)  # (n, n_mels, frames)
        steps = frames * model.hop_length
    codes = model.generate(steps, batch=n, speaker=speaker, cond=cond, generator=generator).cpu()  # (n, steps)
    for i in range(n):
        tag = f"samples/{names[i]}" if model.num_speakers else "samples"
        writer.add_audio(tag, model.waveform(codes[i])[None], step, sample_rate=rate)
    if cond is not None:
        _log_speech_scores(writer, model, test_set, pick, codes, names, step, rate)


def _log_speech_scores(writer, model, test_set, pick: list[int], codes: torch.Tensor, names, step, rate) -> None:
    """How close the re-spoken clips are to their recordings: speech/mcd_db (always: by hand) and speech/stoi
    (if pystoi is installed), plus the recordings' audio. No WER here: the clips are cut to --sample-seconds, so
    their text is unknown; `pixelwave eval` scores whole utterances with PocketSphinx."""
    import numpy as np

    from pixelwave.speech_eval import MissingExtra, mel_cepstral_distortion, stoi

    steps = codes.shape[1]
    recordings = [test_set.recording(i)[:steps] for i in pick]  # (steps,) each, before mu-law
    respoken = model.waveform(codes).numpy()  # (n, steps)
    mel = test_set.mel_options
    mcd = [mel_cepstral_distortion(r, g, rate, n_mels=mel["n_mels"], hop_length=mel["hop_length"],
                                   n_fft=mel["n_fft"]) for r, g in zip(recordings, respoken, strict=True)]
    writer.add_scalar("speech/mcd_db", float(np.mean(mcd)), step)
    for i, r in enumerate(recordings):
        tag = f"recordings/{names[i]}" if model.num_speakers else "recordings"
        writer.add_audio(tag, torch.from_numpy(r)[None], step, sample_rate=rate)
    try:
        # one STOI over the clips end to end: a single short clip has too few of STOI's 384 ms segments
        writer.add_scalar("speech/stoi", stoi(np.concatenate(recordings), respoken.reshape(-1), rate), step)
    except (MissingExtra, ValueError):
        pass  # STOI is the speech-eval extra's and needs ~0.5 s of speech; MCD above is enough to follow a run
