"""Fused WaveNet generation on the CPU: the whole per-sample step (every layer, the head, the draw) in C++.

`run(weights, steps, up, u, temperature)` takes a `pixelwave.models.wavenet.GenerationWeights` (the one packing
of a model's weights that the PyTorch queue loop reads too; `WaveNet.generation_weights` makes it), the
upsampled mel features and the uniforms, and returns the codes, or None when the kernel cannot run here (then
the caller runs the PyTorch path). Nothing here imports the models: this module is the kernel's binding, the
model decides what to pack. It draws the same codes as the PyTorch paths from the same `u`: the same network,
the same inverse-CDF rule; only the order of the floating-point sums differs (float64: ~1e-15, so equal codes;
float32: ~1e-6 in the logits, so a draw flips only where u lands that close to a CDF boundary).

Threads (`default_threads`): a batch is split between the CPUs, rows per thread; at batch 1 two threads split
every sample's layers between them (see wavenet_kernel.cpp) while both get a core, and one goes on alone when
they do not (a busy machine); `last_run` says how it went. Mel conditioning: the kernel projects the upsampled
features itself, a block of steps at a time, so per sample the step just adds that vector.

Three output distributions draw in the kernel: the categorical (softmax over the codes), the discretized
logistic mixture (its exact bin probabilities from the mixture's CDF at the bin edges), and "lpc_mixture" (the
weights' `prediction`: the kernel keeps each row's decoded past, predicts every sample from it in float64 as the
PyTorch paths do, adds the prediction's and the last excitation's embeddings to the input, and draws from the
mixture around the prediction; at temperature 1 by bisection over the codes, see wavenet_kernel.cpp). The
weights' `lag` (a model with `pitch_lag`, any of the three) adds the embedding of the decoded past one pitch
period back to the input, from each row's last decoded samples kept in float64.

Weights (`FORMATS`, `GenerationWeights.format`): float32 (the model's dtype), or for float32 models bf16, fp16
(where the CPU converts half floats: `fp16_supported`) or int8 copies (a scale per output channel) made by the
kernel and widened to float32 in registers: fewer bytes per sample, which is what bounds the batch-1 step
(`stream_rate` measures that bound); see `run`.

The kernel is skipped when $PIXELWAVE_NO_FAST is set to anything but "" or "0", for models off the CPU, and in
dtypes other than float32/float64 (`cannot_run`). The C++ source (wavenet_kernel.cpp, next to this file) is
compiled at first use (see _build.py) for this CPU (-march=native: its vector width and registers, `isa()`;
`target(march)` loads another build beside it); without a compiler the PyTorch path runs, after one warning.

`generate(model, ...)`, `unsupported(model, ...)` and `bf16_unsupported(model, ...)` are the 0.1.0 entry points
taking a WaveNet; they ask the model for its weights and reasons (`WaveNet.generation_weights`,
`WaveNet.fused_unsupported`), and `WaveNet.generate(backend="fused")` is the way in for new code.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

import torch

from pixelwave.fast import _build

SOURCE = "wavenet_kernel.cpp"
_ABI = 13
_MAX_CHUNK = 4096  # steps per kernel call (between calls Python can be interrupted)

_i64, _vp, _f64 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double


class _Desc(ctypes.Structure):
    _fields_ = [(n, _i64) for n in ("layers", "residual", "gate", "skip", "out_channels", "kernel", "batch",
                                    "threads", "tile", "row_block", "initial_code", "patience", "split_limit")] + \
               [("dilations", _vp)] + \
               [(n, _vp) for n in ("emb", "conv_w", "res_w", "res_b", "skip_w", "skip_b", "h1_w", "h1_b",
                                   "h2_w", "h2_b", "init_states", "static_bias")] + \
               [("cond_channels", _i64), ("cond_w", _vp), ("cond_b", _vp), ("format", _i64), ("mixtures", _i64),
                ("levels", _i64)] + \
               [(n, _i64) for n in ("lpc_order", "lpc_frames", "lpc_hop")] + \
               [(n, _vp) for n in ("lpc", "prediction_emb", "excitation_emb", "edges", "centres")] + \
               [("lag_steps", _i64)] + \
               [(n, _vp) for n in ("lag_n", "lag_frac", "lag_voicing", "lag_emb", "lag_values")] + \
               [("lag_silence", _f64)]


class _RunArgs(ctypes.Structure):
    _fields_ = [("t0", _i64), ("n", _i64), ("up", _vp), ("up_b", _i64), ("up_c", _i64), ("u", _vp), ("ldu", _i64),
                ("temperature", _f64), ("codes", _vp), ("ldcodes", _i64), ("logits_out", _vp), ("temps", _vp),
                ("floor", _f64)]


_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
# The weight formats of the fused step's products (GenerationWeights.format) and their codes in the kernel:
# float32 (the model's own dtype: float32 or float64), bfloat16, int8 with a scale per output channel, IEEE half.
FORMATS = {"float32": 0, "bf16": 1, "int8": 2, "fp16": 3}
BYTES_PER_WEIGHT = {"float32": 4, "bf16": 2, "int8": 1, "fp16": 2}  # float32 plans
_lib_checked: dict[int, bool] = {}

# How the last fast generation in this process ran: threads (2 at batch 1 = split), and how many steps ran
# split across the two threads vs on one thread each (split mode falls back to one thread for the rest of a
# chunk when the two threads are not running at the same time, i.e. on a busy machine), and the CPU seconds
# the generating threads used (the kernel's work on a busy machine, without the time it waited for a core).
last_run: dict[str, float] = {}


def disabled() -> bool:
    """True when $PIXELWAVE_NO_FAST asks for the PyTorch path."""
    return os.environ.get("PIXELWAVE_NO_FAST", "") not in ("", "0")


_target: list[str] = []  # -march=... of the build `kernel()` loads (see `target`); empty: this machine's


@contextlib.contextmanager
def target(march: str):
    """Within it, the fused step runs the kernel built with -march=`march` (after -march=native, which it
    overrides: e.g. "x86-64-v3" is the AVX2 build on any x86-64 CPU that can run it); the benchmark times the
    builds side by side this way. Builds are cached per flags, like the default one."""
    _target.append(march)
    try:
        yield
    finally:
        _target.pop()


def _flags() -> tuple[str, ...]:
    return (f"-march={_target[-1]}",) if _target else ()


def kernel() -> ctypes.CDLL | None:
    """The compiled kernel library, built at first use; None if it cannot be built or loaded here."""
    lib = _build.load(SOURCE, _flags())
    if lib is None:
        return None
    if id(lib) not in _lib_checked:
        ok = (lib.pw_abi_version() == _ABI and lib.pw_desc_size() == ctypes.sizeof(_Desc)
              and lib.pw_runargs_size() == ctypes.sizeof(_RunArgs))
        if ok:
            lib.pw_isa.restype = ctypes.c_char_p
            lib.pw_f16.restype = ctypes.c_int
            lib.pw_stream_rate.restype = ctypes.c_double
            lib.pw_stream_rate.argtypes = [_i64, _i64, ctypes.c_double]
            lib.pw_round_trip.restype = ctypes.c_double
            lib.pw_round_trip.argtypes = [ctypes.c_double]
            for sfx in _SUFFIX.values():
                getattr(lib, f"pw_wn_create_{sfx}").restype = _vp
                getattr(lib, f"pw_wn_create_{sfx}").argtypes = [ctypes.POINTER(_Desc)]
                getattr(lib, f"pw_wn_run_{sfx}").restype = ctypes.c_int
                getattr(lib, f"pw_wn_run_{sfx}").argtypes = [_vp, ctypes.POINTER(_RunArgs)]
                getattr(lib, f"pw_wn_stats_{sfx}").restype = None
                getattr(lib, f"pw_wn_stats_{sfx}").argtypes = [_vp, ctypes.POINTER(_i64)]
                getattr(lib, f"pw_wn_products_{sfx}").restype = _i64
                getattr(lib, f"pw_wn_products_{sfx}").argtypes = [_vp, _i64]
                getattr(lib, f"pw_wn_free_{sfx}").restype = None
                getattr(lib, f"pw_wn_free_{sfx}").argtypes = [_vp]
        _lib_checked[id(lib)] = ok
    return lib if _lib_checked[id(lib)] else None


def available() -> bool:
    """Whether the fast path can run in this process (not disabled, and the kernel builds)."""
    return not disabled() and kernel() is not None


def cannot_run(dtype: torch.dtype, device: torch.device, weights: str = "float32",
               channels: tuple[int, ...] = ()) -> str | None:
    """Why the kernel cannot generate here in `dtype` on `device` with `weights` (one of FORMATS) products (None
    if it can). `channels`: the residual, gate and skip widths, which bf16 products take in pairs."""
    if disabled():
        return "disabled by PIXELWAVE_NO_FAST"
    if device.type != "cpu":
        return f"the fast path runs on the CPU, not {device.type}"
    if dtype not in _SUFFIX:
        return f"the fast path computes in float32 or float64, not {dtype}"
    if kernel() is None:
        return f"the kernel could not be built: {_build.build_error(SOURCE, _flags())}"
    if weights not in FORMATS:
        return f"the fused step multiplies by {', '.join(FORMATS)} weights, not {weights!r}"
    if weights != "float32" and dtype != torch.float32:
        return f"{weights} generation needs a float32 model, not {dtype}"
    if weights == "fp16" and not fp16_supported():
        return (f"fp16 weights need a CPU that converts half floats itself (x86 F16C, ARM NEON); this build "
                f"({isa()}) has none: use bf16")
    if weights == "bf16":
        names = ("residual_channels", "gate_channels", "skip_channels")
        odd = [n for n, c in zip(names, channels, strict=False) if c % 2]
        if odd:
            return f"bf16 generation needs even channel counts; {', '.join(odd)} odd"
    return None


def unsupported(model, dtype: torch.dtype, device: torch.device) -> str | None:
    """Why the fused step cannot generate from WaveNet `model` (None if it can): `model.fused_unsupported`."""
    return model.fused_unsupported("float32", dtype, device)


def bf16_unsupported(model, dtype: torch.dtype, device: torch.device) -> str | None:
    """Why the fused step cannot generate from `model` with bfloat16 weights (None if it can)."""
    return model.fused_unsupported("bf16", dtype, device)


def native_bf16() -> bool:
    """False: bf16 weights are widened to float32 in registers on every CPU (no VDPBF16PS, which also rounds the
    inputs). Kept for code written against 0.1.0, where True meant AVX512-BF16 products."""
    return False


def fp16_supported() -> bool:
    """Whether the kernel built here converts half floats in hardware, which fp16 weights need."""
    lib = kernel()
    return bool(lib is not None and lib.pw_f16())


def isa() -> str | None:
    """The vector code of the kernel built here ("avx512", "avx2", "avx", "neon", "sse" or "generic": the
    compile target's, chosen by the compiler's target macros), or None without a kernel."""
    lib = kernel()
    return None if lib is None else lib.pw_isa().decode()


def stream_rate(nbytes: int, threads: int = 2, seconds: float = 0.3) -> float | None:
    """How many times per second `threads` threads together read a buffer of `nbytes` (each its share, as the
    split step reads its half of the weights): at batch 1 every sample reads every weight once, so this is the
    samples/s a step whose weights take `nbytes` cannot beat (the roofline). None without a kernel."""
    lib = kernel()
    rate = None if lib is None else lib.pw_stream_rate(int(nbytes), int(threads), float(seconds))
    return None if rate is None or rate < 0 else rate


def round_trip(seconds: float = 0.05) -> float | None:
    """Nanoseconds a cache line takes from one core to the other and back, between two threads placed as split
    mode places its two: the cost of each of the L + 2 exchanges a split step makes (on a cloud VM it moves with
    where the host puts the two vCPUs, and batch 1's speed with it). None without a kernel."""
    lib = kernel()
    ns = None if lib is None else lib.pw_round_trip(float(seconds))
    return None if ns is None or ns < 0 else ns


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
             temperature: float | torch.Tensor, threads: int | None = None, logits_out: torch.Tensor | None = None,
             tile: int = 0, row_block: int = 0, patience: int = 0, split_limit: int = 0,
             bf16: bool = False, cond: torch.Tensor | None = None, weights: str | None = None) -> torch.Tensor | None:
    """The codes (B, steps) for WaveNet `model` (in eval mode) from what `WaveNet.generate` prepares (spk:
    (B, L, 2G) speaker biases or None), or None if the fused step cannot run here. The other arguments: `run`'s;
    weights: one of FORMATS (bf16=True: "bf16"); cond: the mel frames (B, C, F), which an "lpc_mixture" model
    needs."""
    weights = weights or ("bf16" if bf16 else "float32")
    if model.fused_unsupported(weights) is not None:
        return None
    w = model.generation_weights(spk, u.shape[0], weights, cond, steps)
    codes = run(w, steps, up, u, temperature, threads=threads, logits_out=logits_out, tile=tile, row_block=row_block,
                patience=patience, split_limit=split_limit)
    return None if codes is None else codes.to(next(model.parameters()).device)


@contextlib.contextmanager
def _plan(w, steps: int, up: torch.Tensor | None, threads: int | None, tile: int = 0, row_block: int = 0,
          patience: int = 0, split_limit: int = 0):
    """The kernel's plan for the GenerationWeights `w` (packed weights, queues, threads): yields (lib, suffix,
    plan), freed on exit, or None if the kernel cannot run here. The arguments are `run`'s."""
    dtype = w.conv_w.dtype
    channels = (w.residual_channels, w.gate_channels, w.skip_channels)
    if cannot_run(dtype, torch.device("cpu"), w.format, channels) is not None or w.mixtures is None:
        yield None
        return
    lib = kernel()
    sfx = _SUFFIX[dtype]
    L, R, G, S, k = w.layers, w.residual_channels, w.gate_channels, w.skip_channels, w.kernel_size
    C, B = w.out_channels, w.batch
    threads = default_threads(B) if threads is None else max(1, int(threads))
    keep = {  # tensors the kernel reads while the plan is built; kept alive until then
        "dil": torch.tensor(w.dilations, dtype=torch.int64),
        "emb": _c(w.embedding, dtype),
        "conv_w": _c(w.conv_w, dtype),  # (L, 2G, R, k)
        "res_w": None if w.res_w is None else _c(w.res_w, dtype),  # (L - 1, R, G)
        "res_b": None if w.res_b is None else _c(w.res_b, dtype),
        "skip_w": _c(w.skip_w, dtype),  # (L, S, G)
        "skip_b": _c(w.skip_b, dtype),  # (S,), summed as the PyTorch loop sums it
        "h1_w": _c(w.h1_w, dtype), "h1_b": _c(w.h1_b, dtype),
        "h2_w": _c(w.h2_w, dtype), "h2_b": _c(w.h2_b, dtype),
        "init_states": _c(w.init_states, dtype),  # (B, L, R)
        "static_bias": _c(w.static_bias, dtype),  # (B, L, 2G)
        "cond_w": _c(w.cond_w, dtype) if up is not None else None,
        "cond_b": _c(w.cond_b, dtype) if up is not None else None,
    }
    lpc = w.prediction
    if lpc is not None:  # copied into the plan: the decoded past and the prediction are float64, as in PyTorch
        if lpc.coefficients.shape[0] != B:
            raise ValueError(f"the prediction coefficients are for {lpc.coefficients.shape[0]} rows, not {B}")
        keep.update(lpc=_c(lpc.coefficients, torch.float64), prediction_emb=_c(lpc.prediction_embedding, dtype),
                    excitation_emb=_c(lpc.excitation_embedding, dtype), edges=_c(lpc.edges, torch.float64),
                    centres=_c(lpc.centres, torch.float64))
    lag = w.lag
    if lag is not None:  # copied into the plan, like the prediction's
        if lag.n.shape != (B, steps):
            raise ValueError(f"the pitch lag is for {tuple(lag.n.shape)} (rows, steps), not {(B, steps)}")
        keep.update(lag_n=_c(lag.n, torch.int64), lag_frac=_c(lag.frac, torch.float64),
                    lag_voicing=_c(lag.voicing, torch.float64), lag_emb=_c(lag.embedding, dtype),
                    lag_values=_c(lag.values, torch.float64))
    ptr = {n: (t.data_ptr() if t is not None else None) for n, t in keep.items()}
    desc = _Desc(layers=L, residual=R, gate=G, skip=S, out_channels=C, kernel=k, batch=B, threads=threads,
                 tile=tile, row_block=row_block, initial_code=w.initial_code, patience=patience,
                 split_limit=split_limit, cond_channels=0 if up is None else up.shape[1], format=FORMATS[w.format],
                 mixtures=w.mixtures, levels=w.levels, lpc_order=0 if lpc is None else lpc.order,
                 lpc_frames=0 if lpc is None else lpc.coefficients.shape[1],
                 lpc_hop=0 if lpc is None else lpc.hop_length,
                 lag_steps=0 if lag is None else steps,
                 lag_silence=0.0 if lag is None else lag.silence,
                 dilations=ptr.pop("dil"), **ptr)
    plan = getattr(lib, f"pw_wn_create_{sfx}")(ctypes.byref(desc))
    if not plan:
        yield None
        return
    try:
        yield lib, sfx, plan
    finally:
        getattr(lib, f"pw_wn_free_{sfx}")(plan)


@torch.no_grad()
def product_rate(w, threads: int | None = None, seconds: float = 0.3) -> float | None:
    """Samples/s of the GenerationWeights `w`'s step with its matrix products alone (no gates, copies or draws),
    the threads placed as `run` places them: the ceiling of a many-row batch, which is bound by its
    multiply-adds, as the roofline (`stream_rate`) is batch 1's. Timed for about `seconds` after a warm-up step.
    None where the kernel cannot run, or for batch 1 split over two threads (whose bound is the roofline)."""
    with _plan(w, 1, None, threads) as made:
        if made is None:
            return None
        lib, sfx, plan = made
        products = getattr(lib, f"pw_wn_products_{sfx}")
        if products(plan, 1) < 0:  # warm-up: the weights' and buffers' first touch
            return None
        ns = products(plan, 4)  # the pace, then about `seconds` of it
        steps = max(4, int(seconds / max(ns * 1e-9 / 4, 1e-7)))
        ns = products(plan, steps)
        return None if ns <= 0 else w.batch * steps / (ns * 1e-9)


@torch.no_grad()
def run(w, steps: int, up: torch.Tensor | None, u: torch.Tensor, temperature: float | torch.Tensor,
        threads: int | None = None, logits_out: torch.Tensor | None = None, tile: int = 0, row_block: int = 0,
        patience: int = 0, split_limit: int = 0, floor: float = 0.0) -> torch.Tensor | None:
    """The codes (B, steps), on the CPU, generated with the GenerationWeights `w`, or None if the kernel cannot
    run here. up: (B, C, steps) upsampled mel features or None; u: (B, steps) uniforms; temperature: a number,
    or one per draw (B, steps); floor: the categorical draw's probability floor (`categorical_sample`; mixture
    outputs take none). logits_out, if given, is filled with every step's network output (steps, B,
    C_out): the logits, or the mixture's parameters.
    threads: 1 or more (default `default_threads`); tile, row_block: kernel tuning (0: its defaults);
    patience: at batch 1 on 2 threads, the slow waits within 128 steps after which one thread goes on alone for
    the rest of the chunk (0: the kernel's default, 8; -1: never, so that tests exercise the two-thread path);
    split_limit: if > 0, split mode hands over to one thread after this many steps of every chunk (tests: the
    hand-over and back).
    w.format "bf16": multiply by bfloat16 copies of the weights (nearest even), widened to float32 in registers;
    "fp16": by IEEE half-float copies (nearest even), widened by the CPU's own conversion (F16C, NEON); "int8":
    by int8 copies with a scale per output channel (weight-only quantisation: q = round(w / scale), scale = max
    |w| over the channel's inputs / 127; the summed skips are one matrix of every layer's gates; the output layer
    stays float32). Inputs, products and sums are float32 in every format; the codes then follow
    the model to the weights' precision (docs/benchmarks.md has the KL of each from float32).
    """
    with _plan(w, steps, up, threads, tile, row_block, patience, split_limit) as made:
        if made is None:
            return None
        lib, sfx, plan = made
        B, C, dtype = w.batch, w.out_channels, w.conv_w.dtype
        codes = torch.empty(B, steps, dtype=torch.long)
        u = _c(u.to(dtype))
        temps = _c(temperature.to(dtype)) if isinstance(temperature, torch.Tensor) else None  # (B, steps)
        if temps is not None and temps.shape != u.shape:
            raise ValueError(f"a temperature per draw must have u's shape {tuple(u.shape)}, not {tuple(temps.shape)}")
        if floor and w.mixtures:
            raise ValueError("the probability floor is the categorical output's; a mixture output takes none")
        args = _RunArgs(ldu=steps, temperature=1.0 if temps is not None else float(temperature), ldcodes=steps,
                        floor=float(floor))
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
            args.temps = None if temps is None else temps.data_ptr() + t0 * temps.element_size()
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
        return codes

