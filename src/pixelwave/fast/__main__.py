"""`python -m pixelwave.fast`: build the C++ kernels now rather than at first use (`make` runs it after
installing). A machine without a compiler is not an error: the PyTorch paths run there."""

from __future__ import annotations

import sys
import time


def main() -> int:
    from pixelwave.fast import _build, wavenet_step

    t = time.perf_counter()
    if wavenet_step.kernel() is None:
        print(f"pixelwave: the fast WaveNet kernel is unavailable; generation will take the PyTorch path "
              f"({_build.build_error(wavenet_step.SOURCE)})", file=sys.stderr)
        return 0
    print(f"pixelwave: fast WaveNet kernel ready in {_build.cache_dir()} ({time.perf_counter() - t:.1f} s; "
          f"{wavenet_step.isa()} vectors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
