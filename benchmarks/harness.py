"""What every benchmark shares, written once: the machine's description, timing (warm-up, repeats, medians,
interleaved A/B), the peak-RSS window, the 2048x2048 matmul yardstick, the common flags, the result rows and
the markdown they become. Used by benchmarks/run.py, its sections (benchmarks/sections/) and
benchmarks/wavenet_generation.py.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import functools
import gc
import os
import platform
import re
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import pixelwave

ROOT = Path(__file__).resolve().parent.parent
AUDIO_RATE = 16_000  # Hz, for the real-time factor


# ------------------------------------------------------------------------------------------------ options
@dataclass(frozen=True)
class Options:
    """What a section needs to know about the run: the flags, and the matmul rate measured first (None until the
    reference section has run), which the train rows compare their achieved GFLOP/s with."""

    quick: bool = False
    threads: int | None = None
    budget_seconds: float | None = None
    budget_clock: str = "wall"
    matmul_gflops: float | None = None

    def q(self, quick, full):
        """`quick` under --quick, else `full`."""
        return quick if self.quick else full


def add_common_flags(parser: argparse.ArgumentParser, sections: tuple[str, ...] | None = None,
                     threads_default: str = "os.cpu_count()") -> None:
    """--quick, --threads, --out (and --only where the script has sections, the first of which always runs)."""
    parser.add_argument("--quick", action="store_true", help="shrink everything: checks the script, rough figures")
    if sections is not None:
        parser.add_argument("--only", default=None, metavar="SECTION[,SECTION]",
                            help=f"run these sections only, of {', '.join(sections)} ({sections[0]} always runs)")
    parser.add_argument("--threads", type=int, default=None, help=f"torch threads (default {threads_default})")
    parser.add_argument("--out", default=None, metavar="FILE", help="also write the markdown output here")


def parse_only(parser: argparse.ArgumentParser, only: str | None, sections: tuple[str, ...]) -> list[str]:
    """The sections --only names, in the scripts's order; a parser error for a name it does not know."""
    chosen = set(sections) if only is None else {s.strip() for s in only.split(",") if s.strip()}
    unknown = chosen - set(sections)
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(sections)}")
    return [s for s in sections if s in chosen]


# ------------------------------------------------------------------------------------------------ rows
@dataclass
class Row:
    section: str
    name: str
    setting: str
    result: str
    detail: str = ""
    peak: str = ""


class Rows(list):
    """One section's rows: `add` records a row (and prints it as progress on stderr), `guarded` runs one
    benchmark and turns its failure into a row instead of ending the run."""

    def __init__(self, section: str):
        super().__init__()
        self.section = section

    def add(self, name, setting, result, detail="", peak=None):
        self.append(Row(self.section, name, setting, result, detail, "" if peak is None else f"{peak:,.0f}"))
        progress(self[-1])

    def guarded(self, name: str, fn: Callable[[], None], *, optional: bool = False) -> None:
        """A failure becomes a row: 'n/a' for optional parts, else 'FAILED' (the run's exit code is then 1)."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001 -- the table must still print
            msg = f"{type(e).__name__}: {e}".replace("|", "/").replace("\n", " ")[:160]
            if optional:
                self.add(name, "", "n/a", msg)
            else:
                self.add(name, "", "FAILED", msg)
                traceback.print_exc(file=sys.stderr)


def progress(row: Row) -> None:
    print(f"  [{row.section}] {row.name} | {row.setting} | {row.result} | {row.detail}", file=sys.stderr, flush=True)


def failed(rows: list[Row]) -> bool:
    return any(r.result == "FAILED" for r in rows)


# ------------------------------------------------------------------------------------------------ markdown
def markdown_table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    """A markdown table; `align` has one letter per column: l (left, the default look) or r (right)."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return ["| " + " | ".join(header) + " |", rule, *("| " + " | ".join(r) + " |" for r in rows)]


def rows_table(rows: list[Row]) -> list[str]:
    """The table docs/benchmarks.md is built from: one line per row, the result in bold."""
    return markdown_table(["Section", "Benchmark", "Setting", "Result", "Detail", "Peak RSS (MiB)"],
                          [[r.section, r.name, r.setting, f"**{r.result}**", r.detail, r.peak] for r in rows],
                          "lllllr")


def replace_block(path: Path, lines: list[str], label: str, start: str = "<!-- results:start -->",
                  end: str = "<!-- results:end -->") -> None:
    """Replace what lies between the `start` and `end` markers of `path` with the label and `lines`."""
    text = path.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{path} has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    block = "\n".join([f"_{label}_", "", *lines])
    path.write_text(f"{head}{start}\n{block}\n{end}{tail}")
    print(f"wrote the results block of {path}", file=sys.stderr)


def write_out(path: str | None, text: str) -> None:
    """--out: the same markdown as stdout, to a file."""
    if path:
        Path(path).write_text(text + "\n")
        print(f"wrote {path}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------ timing
def interleaved(fns: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, timed in turn (a, b, c, a, b, c, ...) so that a change of the
    machine's load during the run touches all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def timed(fn: Callable[[], object], repeats: int, warmup: int = 0) -> list[float]:
    return interleaved({"fn": fn}, warmup, repeats)["fn"]


def med(xs):
    return statistics.median(xs)


class num_threads:
    """with num_threads(1): ... -- torch's intra-op thread count for a block, restored afterwards."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


try:
    _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
except OSError:
    _LIBC = None


def reset_peak() -> None:
    """Start a new peak-RSS window: free what can be freed, hand free heap pages back (malloc_trim), then reset
    VmHWM to the current RSS."""
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # not Linux, or not allowed: peak_mib() then reports the process's peak so far


def peak_mib() -> float:
    """Peak RSS since the last reset_peak() (VmHWM), in MiB; ru_maxrss (peak over the whole process) elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def fmt_s(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:,.1f} min"
    if seconds >= 1:
        return f"{seconds:,.2f} s"
    return f"{seconds * 1e3:,.1f} ms"


# ------------------------------------------------------------------------------------------------ yardstick
def matmul_call(n: int = 2048) -> tuple[Callable[[], object], int]:
    """An n x n fp32 matmul to time, and its FLOPs (2 n^3)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return (lambda: torch.mm(a, b)), 2 * n**3


def matmul_gflops(repeats: int, warmup: int = 2) -> tuple[float, list[float]]:
    """The machine's yardstick: GFLOP/s of a 2048 x 2048 fp32 matmul at the median time, and the times."""
    fn, flops = matmul_call()
    ts = timed(fn, repeats, warmup)
    return flops / med(ts) / 1e9, ts


def vs_matmul(gflops: float, matmul: float | None) -> str:
    """An achieved rate next to the matmul rate measured in the same run."""
    if not matmul:
        return f"{gflops:,.1f} GFLOP/s"
    return f"{gflops:,.1f} GFLOP/s = {100 * gflops / matmul:.0f}% of matmul"


# ------------------------------------------------------------------------------------------------ training
def train_step(model: nn.Module, opt: torch.optim.Optimizer, inputs: dict, bf16: bool,
               dims: int | None = None) -> torch.Tensor:
    """One training step (zero_grad, forward, loss, backward, Adam step), optionally under bfloat16 autocast (as
    `pixelwave train --bf16`: bf16 matrix products, float32 weights, optimiser and loss). The loss is
    -mean log p, or bits/dim where `dims` is given; returned."""
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        log_p = model(**inputs)
    loss = -log_p.float().mean() if dims is None else pixelwave.bits_per_dim(log_p.float(), dims)
    loss.backward()
    opt.step()
    return loss


def step_fn(model: nn.Module, inputs: dict, bf16: bool) -> Callable[[], torch.Tensor]:
    """train_step with its own Adam (lr 1e-4) on a fixed batch, as a function to time."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    return lambda: train_step(model, opt, inputs, bf16)


@functools.cache
def binary_mnist(split: str):
    """mnist-sample-binary, loaded once per process (the train and budget sections share it)."""
    import pixelwave.data

    return pixelwave.data.load("mnist-sample-binary", split)


# ------------------------------------------------------------------------------------------------ machine
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (lower-case keys); empty where there is none."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), re.sub(r"\s+", " ", value).strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """The CPU's model name with its family and model numbers: "AMD EPYC" alone hides whether it is a Zen 4
    (family 25: AVX-512 on 256-bit units) or a Zen 5 (family 26: full-width), which halves or doubles the
    compute-bound figures."""
    fields = _cpuinfo()
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    extra = f" (family {fields['cpu family']}, model {fields['model']})" if "cpu family" in fields else ""
    return fields["model name"] + extra


def isa_level() -> str:
    """The widest vector ISA the CPU reports: AVX512-BF16 (bf16 dot products: what bf16 autocast and the fused
    WaveNet step's bf16 weights run fastest on), AVX-512, AVX2, or the architecture's name."""
    flags = set(_cpuinfo().get("flags", "").split())
    for flag, name in (("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2")):
        if flag in flags:
            return name
    return platform.machine() or "unknown"


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def machine() -> str:
    """One line: CPU, ISA level, cores, torch and its threads, Python."""
    return (f"{cpu_model()}, {isa_level()}, {os.cpu_count()} logical cores ({platform.machine()}, "
            f"{platform.system()}); torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"Python {platform.python_version()}")
