"""Fault soak: the faults of tests/test_faults.py injected at random into real runs of a tiny model, many times.
Each must end in an exact resume from a verified checkpoint (bit-identical final weights on CPU) or a one-line
error, never in silent damage.

    .venv/bin/python benchmarks/fault_soak.py --rounds 150          # about 8 minutes on 2 busy cores
    .venv/bin/python benchmarks/fault_soak.py --rounds 7 --seed 3   # a quick look

Faults, one a round, drawn at random: a bit flip at a random offset, or a truncation to a random length, of a
file of the newest checkpoint or of the final model; a deleted manifest; SIGKILL at a random moment of a run's
training; SIGKILL just before a random one of the renames that commit a run's files; a full disk (ENOSPC) at a
random write; a second `pixelwave train` (plain, --resume or --overwrite, at random) on a run that is training.
Prints a table fault | times injected | outcome (docs/reliability.md keeps one), the machine and the date; stops
with exit code 1 at the first round that ends any other way, naming it (the same --seed replays it).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import errno
import importlib
import io
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from pixelwave import checkpoint
from pixelwave.cli import main as cli
from pixelwave.errors import UserError
from pixelwave.training import rundir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
tf = importlib.import_module("test_faults")  # the faults, the tiny run and the outcome check
FINAL_FILES = ["model.safetensors", "config.json", "ema.safetensors", "manifest.json"]
WRITES = 2 + 10 * tf.STEPS  # files a run of STEPS checkpoints writes (ENOSPC targets)
RENAMES = 2 + 11 * tf.STEPS  # renames that commit them (SIGKILL targets)


def quiet(fn, *args):
    """fn(*args) with its stdout kept: (result, the text)."""
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        return fn(*args), text.getvalue()


def resumed(out: Path, reference) -> str:
    """Resume a killed run: the outcome, and whether it had a checkpoint to resume from."""
    had = rundir.list_checkpoints(out)
    outcome, _ = quiet(tf.resume_outcome, out, reference)
    return f"{outcome} resume" + (" from a checkpoint" if had else " (no checkpoint yet: started afresh)")


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ---- one round of each fault: returns (the fault in words, the outcome in words) ----
def damaged_file(rng, work: Path, reference) -> tuple[str, str]:
    out = work / "run"
    quiet(tf.train_toy, out, tf.PARTIAL)
    how = rng.choice(["flip", "truncate"])
    final = rng.random() < 0.3
    name = rng.choice(FINAL_FILES if final else tf.CHECKPOINT_FILES)
    folder = out if final else rundir.step_dir(out, tf.PARTIAL)
    tf.DAMAGE[how](folder / name, rng)
    fault = (f"{'bit flip' if how == 'flip' else 'truncation'}: "
             f"{'final model' if final else 'newest checkpoint'}'s {name}")
    rc, _ = quiet(cli, ["verify", str(out)])
    assert rc == 1, f"{fault}: pixelwave verify said {rc}, not 1"
    outcome, log = quiet(tf.resume_outcome, out, reference)
    if final:
        return fault, f"{outcome} resume"  # the top level is rewritten from the checkpoint resumed
    skipped = [s for s in log.splitlines() if s.startswith("warning: --resume") and folder.name in s]
    assert len(skipped) == 1, f"{fault}: --resume did not name the damaged checkpoint once:\n{log}"
    return fault, f"{outcome} resume from the previous checkpoint, named"


def deleted_manifest(rng, work: Path, reference) -> tuple[str, str]:
    out = work / "run"
    quiet(tf.train_toy, out, tf.PARTIAL)
    (rundir.step_dir(out, tf.PARTIAL) / checkpoint.MANIFEST).unlink()
    outcome, log = quiet(tf.resume_outcome, out, reference)
    assert "manifest.json is missing" in log, log
    return "deleted manifest: newest checkpoint", f"{outcome} resume from the previous checkpoint, named"


def first_checkpoint(proc: subprocess.Popen, out: Path) -> None:
    """Wait until the run has written its first checkpoint (or ended): its training has begun."""
    while rundir.latest_checkpoint(out) is None and proc.poll() is None:
        time.sleep(0.005)


def sigkill_anytime(rng, work: Path, reference, train_seconds: float) -> tuple[str, str]:
    out = work / "run"
    proc = tf.fault_process(work / "a.py", out, "none")
    first_checkpoint(proc, out)
    time.sleep(rng.uniform(0, train_seconds))
    proc.kill()
    if proc.wait() != -signal.SIGKILL:
        return "SIGKILL at a random moment", "ran to the end before the kill (not counted as a kill)"
    return "SIGKILL at a random moment", resumed(out, reference)


def sigkill_in_commit(rng, work: Path, reference) -> tuple[str, str]:
    out = work / "run"
    proc = tf.fault_process(work / "a.py", out, f"kill-at-replace:{rng.randint(1, RENAMES)}")
    assert proc.wait(timeout=120) == -signal.SIGKILL, proc.stderr.read()
    for _, folder in rundir.list_checkpoints(out):
        checkpoint.verify_files(folder)  # every step-* folder is complete at any moment
    try:
        quiet(checkpoint.load, out)
    except UserError:
        pass  # not written yet, or caught between its renames: refused, never half-loaded
    return "SIGKILL during a checkpoint write (before a random rename)", resumed(out, reference)


def disk_full(rng, work: Path, reference) -> tuple[str, str]:
    out, n, calls = work / "run", rng.randint(1, WRITES), [0]
    real_stage = checkpoint.stage

    def stage(path, write):
        calls[0] += 1
        if calls[0] == n:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_stage(path, write)

    checkpoint.stage = stage
    try:
        quiet(tf.train_toy, out, tf.STEPS)
        raise AssertionError(f"a full disk at write {n} did not stop the run")
    except UserError as e:
        assert "\n" not in str(e) and "No space left on device" in str(e), str(e)
    finally:
        checkpoint.stage = real_stage
    outcome, _ = quiet(tf.resume_outcome, out, reference)
    return "disk full (ENOSPC) at a random write", f"one-line error, then {outcome} resume"


def concurrent_train(rng, work: Path, reference) -> tuple[str, str]:
    out = work / "run"
    a = tf.fault_process(work / "a.py", out, f"stop-after-checkpoint:{rng.randint(1, tf.STEPS - 1)}")
    flags = rng.choice([[], ["--resume"], ["--overwrite"]])
    try:
        _, status = os.waitpid(a.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), a.stderr.read()
        before = snapshot(out)
        b = subprocess.run([sys.executable, "-m", "pixelwave", "train", "--model", "gated_pixelcnn", "--data",
                            "mnist-sample-binary", "--out", str(out), "--steps", "4", "--no-progress", *flags],
                           env=tf.env(), capture_output=True, text=True, timeout=120)
        err = b.stderr.strip().splitlines()
        assert b.returncode == 2 and len(err) == 1 and f"PID {a.pid} on" in err[0], b.stderr
        assert snapshot(out) == before, "the second train changed the directory"
    finally:
        a.send_signal(signal.SIGCONT)
    assert a.wait(timeout=120) == 0, a.stderr.read()
    for name, tensors in reference.items():
        tf.assert_same_tensors(tensors, tf.weights(out / name))
    return (f"second train {' '.join(flags) or '(plain)'} on a run that is training",
            "exit 2, holder named, directory unchanged; the first run ended exact")


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(s.split(":", 1)[1].strip() for s in lscpu.splitlines() if s.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="faults to inject (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="the draw of faults, offsets and moments (default 0)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    faults = [damaged_file, damaged_file, deleted_manifest, sigkill_anytime, sigkill_in_commit, disk_full,
              concurrent_train]
    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reference, _ = quiet(tf.reference_run, tmp / "reference")
        timed = tf.fault_process(tmp / "a.py", tmp / "timed", "none")
        first_checkpoint(timed, tmp / "timed")
        t0 = time.time()  # how long a run trains after its first checkpoint: a random SIGKILL comes within that
        assert timed.wait(timeout=120) == 0
        train_seconds = time.time() - t0
        for r in range(args.rounds):
            rng = random.Random(f"{args.seed}-{r}")
            fault = rng.choice(faults)
            work = tmp / f"round-{r}"
            work.mkdir()
            try:
                extra = (train_seconds,) if fault is sigkill_anytime else ()
                what, outcome = fault(rng, work, reference, *extra)
            except Exception as e:
                print(f"FAILED round {r} ({fault.__name__}, --seed {args.seed}): {type(e).__name__}: {e}")
                return 1
            table[what][outcome] += 1
            print(f"round {r + 1}/{args.rounds}: {what}: {outcome}", flush=True)
    print(f"\n{args.rounds} faults in {time.time() - start:.0f} s on {machine()}, {date.today()} "
          f"(--seed {args.seed})\n")
    print("| fault | times injected | outcome |\n|---|---|---|")
    for what in sorted(table):
        outcomes = table[what]
        injected = sum(n for o, n in outcomes.items() if "not counted" not in o)
        print(f"| {what} | {injected} | " + "; ".join(f"{o}: {n}" for o, n in outcomes.most_common()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
