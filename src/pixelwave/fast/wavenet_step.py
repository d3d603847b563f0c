"""Fused WaveNet generation on the CPU: the whole per-sample step (every layer, the head, the draw) in C++.

`generate(model, steps, spk, up, u, temperature)` takes what `WaveNet.generate` has prepared (the speaker
biases, the upsampled mel features, the uniforms) and returns the codes, or None when the fast path cannot
run here (then the caller runs the PyTorch cached path). It draws the same codes as the PyTorch paths from
the same `u`: the same network, the same inverse-CDF rule; only the order of the floating-point sums differs
(float64: ~1e-15, so equal codes; float32: ~1e-6 in the logits, so a draw flips only where u lands that close
to a CDF boundary).

Threads (`default_threads`): a batch is split between the CPUs, rows per thread; at batch 1 two threads split
every sample's layers between them (see wavenet_kernel.cpp) while both get a core, and one goes on alone when
they do not (a busy machine); `last_run` says how it went. Mel conditioning: the kernel projects the upsampled
features itself, a block of steps at a time, so per sample the step just adds that vector.

Both output distributions draw in the kernel: the categorical (softmax over the codes) and the discretized
logistic mixture (its exact bin probabilities from the mixture's CDF at the bin edges). The fast path is skipped
when $PIXELWAVE_NO_FAST is set to anything but "" or "0", for models off the CPU, and in dtypes other than
float32/float64. The C++ source
(wavenet_kernel.cpp, next to this file) is compiled at first use (see _build.py); without a compiler the
PyTorch path runs, after one warning.
"""

from __future__ import annotations

import ctypes
import os

import torch

from pixelwave.fast import _build

SOURCE = "wavenet_kernel.cpp"
_ABI = 7
_MAX_CHUNK = 4096  # steps per kernel call (between calls Python can be interrupted)

_i64, _vp, _f64 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double


class _Desc(ctypes.Structure):
    _fields_ = [(n, _i64) for n in ("layers", "residual", "gate", "skip", "out_channels", "kernel", "batch",
                                    "threads", "tile", "row_block", "initial_code", "patience", "split_limit")] + \
               [("dilations", _vp)] + \
               [(n, _vp) for n in ("emb", "conv_w", "res_w", "res_b", "skip_w", "skip_b", "h1_w", "h1_b",
                                   "h2_w", "h2_b", "init_states", "static_bias")] + \
               [("cond_channels", _i64), ("cond_w", _vp), ("cond_b", _vp), ("bf16", _i64), ("mixtures", _i64),
                ("levels", _i64)]


class _RunArgs(ctypes.Structure):
    _fields_ = [("t0", _i64), ("n", _i64), ("up", _vp), ("up_b", _i64), ("up_c", _i64), ("u", _vp), ("ldu", _i64),
                ("temperature", _f64), ("codes", _vp), ("ldcodes", _i64), ("logits_out", _vp)]


_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_lib_checked: dict[int, bool] = {}

# How the last fast generation in this process ran: threads (2 at batch 1 = split), and how many steps ran
# split across the two threads vs on one thread each (split mode falls back to one thread for the rest of a
# chunk when the two threads are not running at the same time, i.e. on a busy machine), and the CPU seconds
# the generating threads used (the kernel's work on a busy machine, without the time it waited for a core).
last_run: dict[str, float] = {}


def disabled() -> bool:
    """True when $PIXELWAVE_NO_FAST asks for the PyTorch path."""
    return os.environ.get("PIXELWAVE_NO_FAST", "") not in ("", "0")


def kernel() -> ctypes.CDLL | None:
    """The compiled kernel library, built at first use; None if it cannot be built or loaded here."""
    lib = _build.load(SOURCE)
    if lib is None:
        return None
    if id(lib) not in _lib_checked:
        ok = (lib.pw_abi_version() == _ABI and lib.pw_desc_size() == ctypes.sizeof(_Desc)
              and lib.pw_runargs_size() == ctypes.sizeof(_RunArgs))
        if ok:
            for sfx in _SUFFIX.values():
                getattr(lib, f"pw_wn_create_{sfx}").restype = _vp
                getattr(lib, f"pw_wn_create_{sfx}").argtypes = [ctypes.POINTER(_Desc)]
                getattr(lib, f"pw_wn_run_{sfx}").restype = ctypes.c_int
                getattr(lib, f"pw_wn_run_{sfx}").argtypes = [_vp, ctypes.POINTER(_RunArgs)]
                getattr(lib, f"pw_wn_stats_{sfx}").restype = None
                getattr(lib, f"pw_wn_stats_{sfx}").argtypes = [_vp, ctypes.POINTER(_i64)]
                getattr(lib, f"pw_wn_free_{sfx}").restype = None
                getattr(lib, f"pw_wn_free_{sfx}").argtypes = [_vp]
        _lib_checked[id(lib)] = ok
    return lib if _lib_checked[id(lib)] else None


def available() -> bool:
    """Whether the fast path can run in this process (not disabled, and the kernel builds)."""
    return not disabled() and kernel() is not None


def unsupported(model, dtype: torch.dtype, device: torch.device) -> str | None:
    """Why the fast path cannot generate from `model` (None if it can)."""
    if disabled():
        return "disabled by PIXELWAVE_NO_FAST"
    if device.type != "cpu":
        return f"the fast path runs on the CPU, not {device.type}"
    if dtype not in _SUFFIX:
        return f"the fast path computes in float32 or float64, not {dtype}"
    if _mixtures(model) is None:
        return f"the fast path draws from the categorical and logistic-mixture outputs, not {model.output!r}"
    if kernel() is None:
        return f"the kernel could not be built: {_build.build_error(SOURCE)}"
    return None


def _mixtures(model) -> int | None:
    """0 for the categorical output, K for a K-component logistic mixture, None for anything else."""
    from pixelwave.models.wavenet import CategoricalOutput, LogisticMixtureOutput

    if model.output is CategoricalOutput:
        return 0
    if type(model.output) is LogisticMixtureOutput:
        return model.output.mixtures
    return None


def bf16_unsupported(model, dtype: torch.dtype, device: torch.device) -> str | None:
    """Why the fast path cannot generate from `model` with bfloat16 weights (None if it can)."""
    why = unsupported(model, dtype, device)
    if why:
        return why
    cfg = model.config
    if dtype != torch.float32:
        return f"bf16 generation needs a float32 model, not {dtype}"
    odd = [n for n in ("residual_channels", "gate_channels", "skip_channels") if getattr(cfg, n) % 2]
    if odd:
        return f"bf16 generation needs even channel counts; {', '.join(odd)} odd"
    return None


def native_bf16() -> bool:
    """Whether the kernel built here multiplies bfloat16 natively (AVX512-BF16), i.e. bf16 generation is faster
    than float32; without it the same products are emulated in float32."""
    lib = kernel()
    return bool(lib is not None and lib.pw_native_bf16())


def default_threads(batch: int) -> int:
    """$PIXELWAVE_FAST_THREADS, else the CPUs this process may use, at most 2 for batch 1 and `batch` else."""
    env = os.environ.get("PIXELWAVE_FAST_THREADS")
    if env:
        return max(1, int(env))
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(n, 2 if batch == 1 else batch))


def _c(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return t.detach().to(dtype or t.dtype).contiguous()


@torch.no_grad()
def generate(model, steps: int, spk: torch.Tensor | None, up: torch.Tensor | None, u: torch.Tensor,
             temperature: float, threads: int | None = None, logits_out: torch.Tensor | None = None,
             tile: int = 0, row_block: int = 0, patience: int = 0, split_limit: int = 0,
             bf16: bool = False) -> torch.Tensor | None:
    """The codes (B, steps) for `model` (a WaveNet in eval mode) from the prepared inputs, or None if the fast
    path is unavailable here. spk: (B, L, 2G) speaker biases or None; up: (B, C, steps) upsampled mel features
    or None; u: (B, steps) uniforms. logits_out, if given, is filled with every step's network output (steps, B,
    C_out): the logits, or the mixture's parameters.
    threads: 1 or more (default `default_threads`); tile, row_block: kernel tuning (0: its defaults);
    patience: at batch 1 on 2 threads, the slow waits per chunk after which one thread goes on alone (0: the
    kernel's default, -1: never, so that tests exercise the two-thread path); split_limit: if > 0, split mode
    hands over to one thread after this many steps of every chunk (tests: the hand-over and back).
    bf16: multiply by bfloat16 copies of the weights, the inputs of each product rounded to bfloat16 and the
    sums in float32 (float32 models with even channel counts: `bf16_unsupported`); the codes then follow the
    model to about bfloat16's precision, no longer those of the float32 paths.
    """
    param = next(model.parameters())
    dtype, device = param.dtype, param.device
    if (bf16_unsupported if bf16 else unsupported)(model, dtype, device) is not None:
        return None
    lib = kernel()
    sfx = _SUFFIX[dtype]
    cfg = model.config
    blocks = model.blocks
    L, R, G, S, k = len(blocks), cfg.residual_channels, cfg.gate_channels, cfg.skip_channels, cfg.kernel_size
    C = model.output.channels(model.levels)
    B = u.shape[0]
    threads = default_threads(B) if threads is None else max(1, int(threads))

    # The per-layer biases of WaveNet._generate_cached: conv bias + speaker; the kernel adds the mel projections.
    static = torch.stack([b.conv.bias for b in blocks])[None].expand(B, -1, -1)  # (B, L, 2G)
    if spk is not None:
        static = static + spk
    states = model._silence_states(spk)  # [(1|B, R)] * L
    init = _c(torch.stack([s.expand(B, -1) for s in states], dim=1), dtype)  # (B, L, R)
    keep = {  # tensors the kernel reads while the plan is built; kept alive until then
        "dil": torch.tensor(model.dilations, dtype=torch.int64),
        "emb": _c(model.embedding.weight, dtype),
        "conv_w": _c(torch.stack([b.conv.weight for b in blocks]), dtype),  # (L, 2G, R, k)
        "res_w": _c(torch.stack([b.residual.weight[:, :, 0] for b in blocks[:-1]]), dtype) if L > 1 else None,
        "res_b": _c(torch.stack([b.residual.bias for b in blocks[:-1]]), dtype) if L > 1 else None,
        "skip_w": _c(torch.stack([b.skip.weight[:, :, 0] for b in blocks]), dtype),  # (L, S, G)
        "skip_b": _c(torch.stack([b.skip.bias for b in blocks]).sum(0), dtype),  # (S,), summed as the cached path
        "h1_w": _c(model.head[1].weight[:, :, 0], dtype), "h1_b": _c(model.head[1].bias, dtype),
        "h2_w": _c(model.head[3].weight[:, :, 0], dtype), "h2_b": _c(model.head[3].bias, dtype),
        "init_states": init,
        "static_bias": _c(static, dtype),  # (B, L, 2G)
        "cond_w": _c(torch.cat([b.cond_proj.weight[:, :, 0] for b in blocks]), dtype) if up is not None else None,
        "cond_b": _c(torch.cat([b.cond_proj.bias for b in blocks]), dtype) if up is not None else None,
    }
    ptr = {n: (t.data_ptr() if t is not None else None) for n, t in keep.items()}
    desc = _Desc(layers=L, residual=R, gate=G, skip=S, out_channels=C, kernel=k, batch=B, threads=threads,
                 tile=tile, row_block=row_block, initial_code=model.silence, patience=patience,
                 split_limit=split_limit, cond_channels=0 if up is None else up.shape[1], bf16=int(bf16),
                 mixtures=_mixtures(model), levels=model.levels,
                 dilations=ptr.pop("dil"), **ptr)
    plan = getattr(lib, f"pw_wn_create_{sfx}")(ctypes.byref(desc))
    if not plan:
        return None
    try:
        codes = torch.empty(B, steps, dtype=torch.long)
        u = _c(u.to(dtype))
        args = _RunArgs(ldu=steps, temperature=float(temperature), ldcodes=steps)
        if logits_out is not None:
            assert logits_out.shape == (steps, B, C) and logits_out.dtype == dtype and logits_out.is_contiguous()
        run = getattr(lib, f"pw_wn_run_{sfx}")
        if up is not None:
            up = up.detach().to(dtype)
            if up.stride(2) != 1:
                up = up.contiguous()
            args.up_b, args.up_c = up.stride(0), up.stride(1)
        for t0 in range(0, steps, _MAX_CHUNK):
            n = min(_MAX_CHUNK, steps - t0)
            args.t0, args.n = t0, n
            args.up = None if up is None else up.data_ptr() + t0 * up.element_size()
            args.u = u.data_ptr() + t0 * u.element_size()
            args.codes = codes.data_ptr() + t0 * codes.element_size()
            args.logits_out = None if logits_out is None else logits_out[t0].data_ptr()
            rc = run(plan, ctypes.byref(args))
            if rc != 0:
                if t0 == 0:
                    return None  # e.g. no thread could be started: the PyTorch path instead
                raise RuntimeError(f"pixelwave fast WaveNet kernel failed (code {rc}) at step {t0}")
        stats = (_i64 * 4)()
        getattr(lib, f"pw_wn_stats_{sfx}")(plan, stats)
        last_run.clear()
        last_run.update(threads=stats[0], split_steps=stats[1], single_steps=stats[2], cpu_s=stats[3] * 1e-9)
        return codes.to(device)
    finally:
        getattr(lib, f"pw_wn_free_{sfx}")(plan)

