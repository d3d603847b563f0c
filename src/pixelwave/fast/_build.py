"""Build a C++ kernel of this package at first use and load it with ctypes; None (and one warning) if it can't.

The shared library goes to a cache folder ($PIXELWAVE_CACHE, else $XDG_CACHE_HOME/pixelwave, else
~/.cache/pixelwave; a temporary folder if none is writable), named by a hash of the source, the compiler
command and this CPU's feature flags: a change to any of them builds afresh, and machines sharing a home folder
never load each other's -march=native builds. Builds are written to a temporary name and renamed into place,
so concurrent first uses (pytest-xdist, several workers) are safe. The compiler is $CXX, else c++ / g++ /
clang++ from PATH; $PIXELWAVE_FAST_CXXFLAGS adds flags to its command, and so does `load(source, flags)` (e.g.
-march=x86-64-v3 after -march=native builds for AVX2 on any x86-64 machine: the tests and the benchmark build
every level this way). Nothing needs Python or torch headers.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_LOCK = threading.Lock()  # guards _LOCKS
_LOCKS: dict[tuple[str, tuple[str, ...]], threading.Lock] = {}  # one per build: builds of other flags run at once
_LOADED: dict[tuple[str, tuple[str, ...]], ctypes.CDLL | None] = {}  # (source, flags) -> library
_ERRORS: dict[tuple[str, tuple[str, ...]], str] = {}

# -O3 with FMA contraction on (the ISO default is off); -march=native: this machine's SIMD (AVX-512 here).
_FLAGS = ["-O3", "-std=gnu++17", "-ffp-contract=fast", "-fPIC", "-shared", "-pthread", "-fvisibility=hidden"]
_NATIVE = ["-march=native"]


def cache_dir() -> Path:
    env = os.environ.get("PIXELWAVE_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pixelwave"


def _cpu_signature() -> str:
    """The CPU's model and feature flags: what -march=native compiles for."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key in ("flags", "Features", "model name", "cpu family", "model"):
                    text += line
                if key in ("flags", "Features"):
                    break  # the first processor is enough
    except OSError:
        pass
    return text


def _compiler() -> str | None:
    for name in filter(None, [os.environ.get("CXX"), "c++", "g++", "clang++"]):
        path = shutil.which(name)
        if path:
            return path
    return None


def _extra_flags(flags: tuple[str, ...] = ()) -> list[str]:
    return shlex.split(os.environ.get("PIXELWAVE_FAST_CXXFLAGS", "")) + list(flags)


def _compile(cxx: str, src: Path, out: Path, native: bool, flags: tuple[str, ...]) -> tuple[bool, str]:
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    cmd = [cxx, *_FLAGS, *(_NATIVE if native else []), *_extra_flags(flags), str(src), "-o", str(tmp)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as e:
        return False, f"{' '.join(cmd)}: {e}"
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        return False, f"{' '.join(cmd)}:\n{proc.stderr[-2000:]}"
    os.replace(tmp, out)
    return True, ""


def load(source: str, flags: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """The compiled library for `source` (a file name in this folder), building it if needed; None if it can't.
    flags: compiler flags after the others (e.g. ("-march=x86-64-v3",)): another build, loaded beside this one.

    The reason for a None is in `build_error(source, flags)`; the first failure in a process also warns once.
    """
    key = (source, tuple(flags))
    with _LOCK:
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key in _LOADED:
            return _LOADED[key]
        lib, err = _build_and_load(source, key[1])
        _LOADED[key] = lib
        if lib is None:
            _ERRORS[key] = err
            warnings.warn(f"pixelwave: the fast kernel {source} is unavailable, using the PyTorch path ({err})",
                          RuntimeWarning, stacklevel=3)
        return lib


def build_error(source: str, flags: tuple[str, ...] = ()) -> str | None:
    return _ERRORS.get((source, tuple(flags)))


def _library_name(src: Path, code: bytes, cxx: str, native: bool, extra: tuple[str, ...] = ()) -> str:
    flags = " ".join(_FLAGS + _extra_flags(extra))
    key = hashlib.sha256(b"\0".join([code, cxx.encode(), flags.encode(), str(native).encode(),
                                     _cpu_signature().encode(), sys.platform.encode()])).hexdigest()[:16]
    return f"{src.stem}-{key}.so"


def _folders() -> tuple[Path, Path]:
    user = getattr(os, "getuid", lambda: "user")()
    return cache_dir(), Path(tempfile.gettempdir()) / f"pixelwave-{user}"


def built(source: str) -> bool:
    """Whether `load(source)` will find a library (loaded in this process, or built earlier for this source,
    compiler and CPU) rather than compile one. A missing source or compiler also counts: nothing to build."""
    if (source, ()) in _LOADED:
        return True
    src, cxx = _HERE / source, _compiler()
    try:
        code = src.read_bytes()
    except OSError:
        return True
    if cxx is None:
        return True
    name = _library_name(src, code, cxx, native=True)
    return any((folder / name).exists() for folder in _folders())


def _build_and_load(source: str, flags: tuple[str, ...]) -> tuple[ctypes.CDLL | None, str]:
    src = _HERE / source
    try:
        code = src.read_bytes()
    except OSError as e:
        return None, f"source missing: {e}"
    cxx = _compiler()
    if cxx is None:
        return None, "no C++ compiler found (set CXX, or install g++)"
    errors = []
    for native in (True, False):  # -march=native first; a compiler that lacks it still gets a portable build
        name = _library_name(src, code, cxx, native, flags)
        for folder in _folders():
            out = folder / name
            try:
                if not out.exists():
                    folder.mkdir(parents=True, exist_ok=True)
                    ok, err = _compile(cxx, src, out, native, flags)
                    if not ok:
                        errors.append(err)
                        break  # the compiler failed: another folder will not help
                return ctypes.CDLL(str(out)), ""
            except OSError as e:
                errors.append(f"{out}: {e}")
    return None, "; ".join(errors)
