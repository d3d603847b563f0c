"""Faults injected into real runs (issue 14): damaged checkpoint files, a deleted manifest, SIGKILL in the middle of
a checkpoint write, a full disk, a second `train` on a run that is training. Each must end in an exact resume
from a verified checkpoint (bit-identical final weights on CPU) or a one-line error, never in silent damage.

Tiny models, seconds each. benchmarks/fault_soak.py injects the same faults (the helpers here) many times at
random; its figures are in docs/reliability.md.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train import assert_same_tensors, env, make_config, one_thread, tiny_model, toy_sets, weights  # noqa: F401

import pixelwave as pw
from pixelwave import checkpoint, training
from pixelwave.cli import main
from pixelwave.errors import UserError
from pixelwave.training import rundir, runlock

STEPS, PARTIAL = 8, 5
# A constant learning rate, so that --steps 5 then --resume --steps 8 is the run of --steps 8.
FLAGS = ["--checkpoint-every", "1", "--keep-checkpoints", "3", "--ema", "0.5", "--warmup-steps", "0",
         "--min-lr", "1e-2"]
CHECKPOINT_FILES = ["model.safetensors", "optimizer.safetensors", "ema.safetensors", "state.json", "config.json",
                    "manifest.json"]


# ---- the faults ----
def flip_bit(path: Path, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    offset, bit = rng.randrange(len(data)), rng.randrange(8)
    data[offset] ^= 1 << bit
    path.write_bytes(data)
    return f"bit {bit} of byte {offset}"


def truncate(path: Path, rng: random.Random) -> str:
    size = rng.randrange(path.stat().st_size)
    with open(path, "r+b") as f:
        f.truncate(size)
    return f"cut to {size} bytes"


def delete(path: Path, rng: random.Random) -> str:
    path.unlink()
    return "deleted"


DAMAGE = {"flip": flip_bit, "truncate": truncate, "delete": delete}


# ---- runs and the outcome ----
def train_toy(out: Path, steps: int, *flags: str) -> dict:
    train_set, test_set = toy_sets()
    return training.train(make_config(out, "--steps", str(steps), *FLAGS, *flags), tiny_model(), train_set,
                          test_set)


def reference_run(folder: Path) -> dict[str, dict]:
    """The final weights (model and EMA) of the uninterrupted run."""
    train_toy(folder, STEPS)
    return {name: weights(folder / name) for name in ("model.safetensors", "ema.safetensors")}


def resume_outcome(out: Path, reference: dict, capsys=None) -> str:
    """Resume `out` to STEPS in this process: "exact" if it ends with the reference weights, "error" for a
    one-line UserError. Anything else (other weights: silent damage; a traceback) fails."""
    try:
        train_toy(out, STEPS, "--resume")
    except UserError as e:
        assert "\n" not in str(e), str(e)
        return "error"
    for name, tensors in reference.items():
        assert_same_tensors(tensors, weights(out / name))
    assert rundir.list_checkpoints(out)[-1][0] == STEPS
    for _, folder in rundir.list_checkpoints(out):
        assert checkpoint.verify_files(folder) is not None  # every checkpoint left verifies
    checkpoint.verify_files(out)  # and so does the final model
    return "exact"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch.set_num_threads(1)
    return reference_run(tmp_path_factory.mktemp("reference") / "run")


# ---- damaged files ----
@pytest.mark.parametrize("how,name", [(how, name) for how in ("flip", "truncate") for name in CHECKPOINT_FILES]
                         + [("delete", "manifest.json"), ("delete", "model.safetensors")])
def test_a_damaged_newest_checkpoint_is_skipped_by_name_and_the_resume_is_exact(how, name, reference, tmp_path,
                                                                               capsys):
    out = tmp_path / "run"
    train_toy(out, PARTIAL)
    newest = rundir.step_dir(out, PARTIAL)
    DAMAGE[how](newest / name, random.Random(f"{how}{name}"))
    capsys.readouterr()
    with pytest.raises(checkpoint.DamagedCheckpoint, match=name):
        checkpoint.verify_files(newest)
    assert resume_outcome(out, reference) == "exact"
    lines = [s for s in capsys.readouterr().out.splitlines() if s.startswith("warning: --resume")]
    named = f"step-{PARTIAL:06d}/" + ("" if name == "manifest.json" else name)  # a damaged entry names its file
    assert len(lines) == 1 and named in lines[0] and "resuming from step-000004" in lines[0], lines
    assert (out / "checkpoints" / f"step-{PARTIAL:06d}.damaged").is_dir()  # kept to be looked at


def test_without_verification_a_flipped_bit_would_have_changed_the_weights(reference, tmp_path, monkeypatch):
    """The tests above can fail: the same damage, loaded or resumed without the manifest check, goes unseen."""
    out = tmp_path / "run"
    train_toy(out, PARTIAL)
    path = rundir.step_dir(out, PARTIAL) / "model.safetensors"
    intact = pw.load(path.parent).state_dict()
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little")
    data[8 + header + 2] ^= 0x08  # a mantissa bit of the first float: the file still parses
    path.write_bytes(data)
    with pytest.raises(checkpoint.DamagedCheckpoint, match="model.safetensors is damaged"):
        pw.load(path.parent)
    loaded = pw.load(path.parent, verify=False).state_dict()
    assert sum(not torch.equal(loaded[k], intact[k]) for k in intact) == 1
    monkeypatch.setattr(checkpoint, "verify_files", lambda folder, names=None: None)  # as if there were no manifest
    train_toy(out, STEPS, "--resume")
    with pytest.raises(AssertionError):
        assert_same_tensors(reference["model.safetensors"], weights(out / "model.safetensors"))


def test_no_checkpoint_that_verifies_is_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "pixelcnn", "--data", "mnist-sample-binary", "--preset", "tiny", "--no-progress",
            "--eval-every", "0", "--samples", "0", "--checkpoint-every", "1", "--out", str(out)]
    assert main([*argv, "--steps", "2"]) == 0
    for _, folder in rundir.list_checkpoints(out):
        flip_bit(folder / "optimizer.safetensors", random.Random(0))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([*argv, "--steps", "3", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint in" in err[0] and "step-000002/optimizer.safetensors" in err[0], err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing touched


def test_a_checkpoint_without_a_manifest_from_0_1_resumes_with_a_note(reference, tmp_path, capsys):
    """What pixelwave 0.1 wrote: no manifest.json, and no "manifest" in config.json."""
    out = tmp_path / "run"
    train_toy(out, PARTIAL)
    for _, folder in rundir.list_checkpoints(out):
        (folder / "manifest.json").unlink()
        meta = checkpoint.read_config(folder)
        del meta["manifest"]
        checkpoint.write_json(folder / "config.json", meta)
    capsys.readouterr()
    assert resume_outcome(out, reference) == "exact"
    notes = [s for s in capsys.readouterr().out.splitlines() if "no manifest.json" in s]
    assert len(notes) == 1 and "resuming it unverified" in notes[0] and f"step-{PARTIAL:06d}" in notes[0]


# ---- reading: pw.load, the CLI's --no-verify, pixelwave verify ----
def test_loading_verifies_and_verify_reports_each_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    train_toy(out, 3)
    assert pw.load(out).config.hidden == 4
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [s.split()[0] for s in lines[:-1]] == ["good"] * 4 and lines[-1] == "4 good, 0 damaged, 0 unverified"

    flip_bit(out / "model.safetensors", random.Random(1))  # the final model
    with pytest.raises(checkpoint.DamagedCheckpoint, match=f"{out / 'model.safetensors'} is damaged"):
        pw.load(out)
    pw.load(out / "checkpoints" / "step-000003")  # the checkpoint's own copy is intact
    assert main(["verify", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith(f"DAMAGED     {out / 'model.safetensors'}") and "1 damaged" in lines[-1]
    png = tmp_path / "s.png"
    assert main(["sample", str(out), "-n", "1", "--out", str(png)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.safetensors is damaged" in err[0] and not png.exists()
    try:
        pw.load(out, verify=False)
    except UserError:
        pass  # the flipped bit may have broken the file's header: refused by the reader then
    else:
        assert main(["sample", str(out), "-n", "1", "--out", str(png), "--no-verify"]) == 0 and png.exists()

    for bad in (tmp_path / "absent", tmp_path / "s.png", Path(__file__).parent):
        assert main(["verify", str(bad)]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_verify_and_the_cli_on_checkpoints_of_0_1(tmp_path, capsys):
    old = Path(__file__).parent / "fixtures" / "checkpoints-0.1.0" / "pixelcnn"
    assert main(["verify", str(old)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0 good, 0 damaged, 1 unverified"
    assert main(["sample", str(old), "--size", "3", "-n", "1", "--out", str(tmp_path / "s.png")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pixelwave: warning: ") and "no manifest.json" in err[0], err


def test_a_model_directory_gets_a_manifest(tmp_path):
    model = tiny_model()
    pw.save(model, tmp_path / "m")
    assert sorted(checkpoint.verify_files(tmp_path / "m")) == ["config.json", "model.safetensors"]
    (tmp_path / "m" / "manifest.json").unlink()
    with pytest.raises(checkpoint.DamagedCheckpoint, match="manifest.json is missing"):
        pw.load(tmp_path / "m")
    assert_same_tensors(pw.load(tmp_path / "m", verify=False).state_dict(), model.state_dict())


# ---- the run lock ----
def test_a_locked_run_directory_is_refused_untouched_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    train_toy(out, 2)
    held = runlock.acquire(out)
    held.record()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    try:
        for flags in ([], ["--resume"], ["--overwrite"]):
            with pytest.raises(runlock.RunInUse, match=rf"is in use: PID {os.getpid()} on .*pytest") as e:
                train_toy(out, 4, *flags)
            assert "\n" not in str(e.value)
            assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    finally:
        held.release()
    train_toy(out, 4, "--resume")  # released: the run continues
    assert rundir.list_checkpoints(out)[-1][0] == 4


def test_under_torchrun_every_rank_stops_when_the_run_is_held(tmp_path):
    """Rank 0 takes the lock; when it cannot, all ranks stop with it (none waits in a collective)."""
    out = tmp_path / "run"
    out.mkdir()
    held = runlock.acquire(out)
    held.record()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                "pixelwave", "train", "--model", "pixelcnn", "--data", "mnist-sample-binary", "--preset", "tiny",
                "--no-progress", "--steps", "2", "--out", str(out)]
    try:
        r = subprocess.run(torchrun, env=env(), capture_output=True, text=True, timeout=300)
    finally:
        held.release()
    assert r.returncode != 0 and f"is in use: PID {os.getpid()} on" in r.stderr, r.stderr[-3000:]
    assert [p.name for p in out.iterdir()] == [".lock"]


FAULT_SCRIPT = """
import os, signal, sys
from test_train import make_config, tiny_model, toy_sets
from test_faults import FLAGS
from pixelwave.training import rundir, train

kind, _, n = os.environ.get("PW_FAULT", "").partition(":")
if kind == "kill-at-replace":  # SIGKILL just before the n-th rename (every file and folder commit is one)
    real_replace, calls = os.replace, [0]

    def replace(src, dst, **kw):
        calls[0] += 1
        if calls[0] == int(n):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, **kw)

    os.replace = replace
elif kind == "stop-after-checkpoint":  # SIGSTOP once checkpoint n is written: the run holds its lock, frozen
    real_save = rundir.save_checkpoint

    def save_checkpoint(run_dir, step, *args, **kw):
        path = real_save(run_dir, step, *args, **kw)
        if step == int(n):
            os.kill(os.getpid(), signal.SIGSTOP)
        return path

    rundir.save_checkpoint = save_checkpoint
train_set, test_set = toy_sets()
train(make_config(sys.argv[1], "--steps", sys.argv[2], *FLAGS), tiny_model(), train_set, test_set)
"""


def fault_process(script: Path, out: Path, fault: str, steps: int = STEPS) -> subprocess.Popen:
    script.write_text(FAULT_SCRIPT)
    return subprocess.Popen([sys.executable, str(script), str(out), str(steps)], env={**env(), "PW_FAULT": fault},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_second_train_on_a_run_that_is_training_exits_2_naming_it(reference, tmp_path):
    out = tmp_path / "run"
    a = fault_process(tmp_path / "a.py", out, "stop-after-checkpoint:2")
    try:
        _, status = os.waitpid(a.pid, os.WUNTRACED)  # returns once A has stopped itself, holding the lock
        assert os.WIFSTOPPED(status), a.stderr.read()
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        cli = [sys.executable, "-m", "pixelwave"]
        train = [*cli, "train", "--model", "gated_pixelcnn", "--data", "mnist-sample-binary", "--out", str(out),
                 "--steps", "4", "--no-progress"]
        for flags in ([], ["--resume"], ["--overwrite"]):
            b = subprocess.run([*train, *flags], env=env(), capture_output=True, text=True, timeout=120)
            err = b.stderr.strip().splitlines()
            assert b.returncode == 2 and len(err) == 1, (flags, b.stderr)
            assert f"is in use: PID {a.pid} on " in err[0] and "a.py" in err[0], err[0]
            assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before, flags
        # Readers never take the lock: sampling from the run that is training works.
        s = subprocess.run([*cli, "sample", str(out), "-n", "1", "--out", str(tmp_path / "s.png")], env=env(),
                           capture_output=True, text=True, timeout=120)
        assert s.returncode == 0 and (tmp_path / "s.png").is_file(), s.stderr
    finally:
        a.send_signal(signal.SIGCONT)
    assert a.wait(timeout=120) == 0, a.stderr.read()
    for name, tensors in reference.items():  # A's run was not disturbed
        assert_same_tensors(tensors, weights(out / name))


# Renames 1-2 are data.json and train_args.json; each checkpoint then makes 11: its 6 files in the temporary
# folder, the folder (9, 20, ...), the top level's 3 files and their manifest (13, 24, ...).
@pytest.mark.parametrize("n", [9, 13, 20, 24])
def test_sigkill_during_a_checkpoint_write_then_resume_is_exact(n, reference, tmp_path):
    out = tmp_path / "run"
    a = fault_process(tmp_path / "a.py", out, f"kill-at-replace:{n}")
    assert a.wait(timeout=120) == -signal.SIGKILL, a.stderr.read()
    for _, folder in rundir.list_checkpoints(out):
        assert checkpoint.verify_files(folder) is not None  # every step-* folder is complete, at any moment
    try:
        pw.load(out)
    except UserError:
        pass  # killed before the top level was written or while it was: refused, never half-loaded
    assert resume_outcome(out, reference) == "exact"  # the killed run's lock died with it
    assert not list(out.glob(".*.tmp")) and not list((out / "checkpoints").glob(".*"))


@pytest.mark.parametrize("n", [1, 4, 9, 12])
def test_a_full_disk_at_any_write_stops_with_one_line_and_resume_is_exact(n, reference, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_stage, calls = checkpoint.stage, [0]

    def stage(path, write):
        calls[0] += 1
        if calls[0] == n:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_stage(path, write)

    monkeypatch.setattr(checkpoint, "stage", stage)
    with pytest.raises(UserError, match="No space left on device") as e:
        train_toy(out, STEPS)
    assert "\n" not in str(e.value)
    monkeypatch.setattr(checkpoint, "stage", real_stage)
    assert resume_outcome(out, reference) == "exact"
