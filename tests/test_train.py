"""The training loop: run directory, exact evaluation, bit-identical resume (in-process and after SIGKILL),
refusing to clobber runs, divergence, no pickle, torchrun with 2 CPU processes, learning on real data."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import pixelwave as pw
from pixelwave import training
from pixelwave.data.base import ImageDataset
from pixelwave.errors import UserError
from pixelwave.training import TrainConfig
from pixelwave.training import rundir as train_state

TESTS = Path(__file__).resolve().parent
SRC = Path(pw.__file__).resolve().parents[1]


# ---- tiny things shared with the subprocess scripts below (they import this module) ----
def toy_sets(n_train: int = 20, n_test: int = 9) -> tuple[ImageDataset, ImageDataset]:
    """Binary 6x6 images with a little structure (vertical bars) and 2 classes."""
    g = torch.Generator().manual_seed(1234)
    n = n_train + n_test
    y = torch.randint(0, 2, (n,), generator=g)
    cols = torch.rand(n, 1, 1, 6, generator=g) < 0.3 + 0.4 * y[:, None, None, None]  # (N, 1, 1, 6)
    noise = torch.rand(n, 1, 6, 6, generator=g) < 0.1
    x = (cols.expand(n, 1, 6, 6) ^ noise).to(torch.uint8)  # (N, 1, 6, 6)
    make = lambda s: ImageDataset("toy", x[s], y[s], levels=2, num_classes=2)  # noqa: E731
    return make(slice(0, n_train)), make(slice(n_train, n))


def tiny_model(seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return pw.models.GatedPixelCNN(**{"channels": 1, "levels": 2, "hidden": 4, "layers": 2, "kernel_size": 3,
                                      **kw})


def make_config(out, *flags: str) -> TrainConfig:
    """A TrainConfig from `pixelwave train` flags, parsed and merged as the CLI does."""
    from pixelwave.cli.options import DEFAULTS, add_train_options, train_config

    parser = argparse.ArgumentParser()
    add_train_options(parser)
    base = ["--out", str(out), "--no-progress", "--samples", "0", "--log-every", "1", "--eval-every", "0",
            "--batch-size", "8", "--warmup-steps", "2", "--lr", "1e-2"]
    typed = vars(parser.parse_args(base + list(flags)))
    return train_config({**DEFAULTS, **typed})


def weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and 2 OpenMP threads on busy shared cores can be 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def env() -> dict:
    e = dict(os.environ)
    e["OMP_NUM_THREADS"] = "1"
    e["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), e.get("PYTHONPATH", "")])
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        e.pop(k, None)
    return e


# A script that trains the tiny model: `python script.py OUT FLAGS...` (also under torchrun).
SCRIPT = """
import sys
from test_train import make_config, tiny_model, toy_sets
from pixelwave.training import train
train_set, test_set = toy_sets()
train(make_config(sys.argv[1], *sys.argv[2:]), tiny_model(), train_set, test_set)
"""


# ---- tests ----
def test_learning_rate_schedule():
    lrs = [training.learning_rate(s, 1.0, 0.1, 4, 20) for s in range(22)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]  # linear warm-up reaching the peak
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))  # then never increasing
    assert lrs[19] > 0.1 and math.isclose(lrs[20], 0.1) and lrs[21] == 0.1  # min-lr exactly at --steps


def test_learning_rate_follows_the_time_limit():
    lr = training.learning_rate
    assert lr(10, 1.0, 0.1, 4, 20, elapsed=0.0, time_limit=60) == lr(10, 1.0, 0.1, 4, 20)  # no time used yet
    assert lr(10, 1.0, 0.1, 4, 1000, elapsed=30, time_limit=60) == pytest.approx(0.55)  # half the time: half way
    assert lr(10, 1.0, 0.1, 4, 1000, elapsed=60, time_limit=60) == 0.1  # the floor when the time runs out
    assert lr(10, 1.0, 0.1, 4, 1000, elapsed=90, time_limit=60) == 0.1
    assert lr(19, 1.0, 0.1, 4, 20, elapsed=1, time_limit=60) == lr(19, 1.0, 0.1, 4, 20)  # steps end first
    assert lr(1, 1.0, 0.1, 4, 1000, elapsed=30, time_limit=60) == pytest.approx(0.55 * 2 / 4)  # warm-up scales it


class FakeClock:
    """A clock that moves one second at every reading: a training step takes as long at any machine's speed."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@contextlib.contextmanager
def sigterm_at_batch(train_set, n: int):
    """While inside: the n-th batch drawn from train_set sends this process SIGTERM (as a scheduler would). Yields
    [batches drawn so far]."""
    calls, real_batch = [0], train_set.batch

    def batch_then_sigterm(idx, generator=None):
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_batch(idx, generator)

    train_set.batch = batch_then_sigterm
    try:
        yield calls
    finally:
        train_set.batch = real_batch


def test_time_limit_decays_the_learning_rate_to_its_floor_and_resume_continues_it(tmp_path, monkeypatch):
    """With --time-limit and far too many --steps the rate ends at --min-lr when the time runs out; a run
    stopped by SIGTERM and resumed continues the schedule from its saved training time: the same weights."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pixelwave.training import loop

    monkeypatch.setattr(loop, "clock", FakeClock())
    flags = ["--steps", "1000", "--time-limit", "20", "--min-lr", "1e-3", "--checkpoint-every", "4"]
    train_set, test_set = toy_sets()
    metrics = training.train(make_config(tmp_path / "a", *flags), tiny_model(), train_set, test_set)
    # Three readings a step: its start, the sync after the backward pass (the time the rate and the stop use),
    # and its end, so step n syncs at 2n - 1 seconds and step 11 uses the 20 seconds up.
    assert metrics["step"] == 11
    assert json.loads((tmp_path / "a/checkpoints/step-000011/state.json").read_text())["lr"] == 1e-3
    rates = [e.value for e in EventAccumulator(str(tmp_path / "a/tb")).Reload().Scalars("lr")]
    assert len(rates) == 11 and rates[-1] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(rates[1:], rates[2:], strict=False))  # after the 2 warm-up steps: down
    one_step_before = training.learning_rate(9, 1e-2, 1e-3, 2, 1000, elapsed=19, time_limit=20)
    assert rates[-2] == pytest.approx(one_step_before) and rates[-2] < 1e-3 + 0.01 * (1e-2 - 1e-3)

    with sigterm_at_batch(train_set, 6), pytest.raises(SystemExit):
        training.train(make_config(tmp_path / "b", *flags), tiny_model(), train_set, test_set)
    assert json.loads((tmp_path / "b/checkpoints/step-000006/state.json").read_text())["train_seconds"] == 12
    monkeypatch.setattr(loop, "clock", FakeClock())  # a new process: its clock starts anywhere
    assert training.train(make_config(tmp_path / "b", *flags, "--resume"), tiny_model(seed=99), train_set,
                          test_set)["step"] == 11
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert_same_tensors(weights(tmp_path / "a/checkpoints/step-000011" / name),
                            weights(tmp_path / "b/checkpoints/step-000011" / name))


def test_run_writes_a_loadable_run_directory(tmp_path):
    train_set, test_set = toy_sets()
    out = tmp_path / "run"
    model = tiny_model()
    metrics = training.train(make_config(out, "--steps", "3", "--ema", "0.9"), model, train_set, test_set)

    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "config.json", "ema.safetensors",
                                               "data.json", "train_args.json", "tb", "checkpoints"}
    assert json.loads((out / "data.json").read_text()) == json.loads(json.dumps(train_set.info()))
    assert json.loads((out / "train_args.json").read_text())["steps"] == 3
    assert [s for s, _ in train_state.list_checkpoints(out)] == [3]

    loaded = pw.load(out)
    batch = test_set.batch(torch.arange(len(test_set)))
    model.eval()
    assert torch.equal(loaded(batch["x"]), model(batch["x"]))  # unconditional model: labels dropped
    # The reported held-out bits/dim is the exact whole-split figure of the saved weights.
    assert metrics["step"] == 3 and metrics["test_examples"] == len(test_set)
    expected = training.evaluate(loaded, test_set, 4, "cpu")["bits_per_dim"]
    assert metrics["test_bits_per_dim"] == pytest.approx(expected, rel=1e-12)
    ema = pw.load(out, weights="ema.safetensors")
    assert metrics["test_ema_bits_per_dim"] == pytest.approx(
        training.evaluate(ema, test_set, 5, "cpu")["bits_per_dim"], rel=1e-12)
    assert not torch.equal(ema(batch["x"]), loaded(batch["x"]))


def test_ema_is_the_moving_average_of_the_weights(tmp_path):
    train_set, test_set = toy_sets()
    init = {k: v.clone() for k, v in tiny_model().state_dict().items()}
    training.train(make_config(tmp_path / "run", "--steps", "1", "--ema", "0.75"), tiny_model(), train_set, test_set)
    final, ema = weights(tmp_path / "run/model.safetensors"), weights(tmp_path / "run/ema.safetensors")
    assert sum(not torch.equal(final[k], init[k]) for k in init) > len(init) // 2  # it trained
    for k in init:
        torch.testing.assert_close(ema[k], 0.75 * init[k] + 0.25 * final[k])


def test_evaluate_aggregates_the_whole_set_exactly():
    _, test_set = toy_sets(n_test=23)
    model = tiny_model().eval()
    x = test_set.batch(torch.arange(23))["x"]
    with torch.no_grad():
        log_p = model(x).double()  # (23,)
    expected = -log_p.sum().item() / (23 * 36 * math.log(2))
    for batch_size in (1, 5, 23, 64):  # uneven last batches must not be over-weighted
        r = training.evaluate(model, test_set, batch_size, "cpu")
        assert r["examples"] == 23
        assert r["bits_per_dim"] == pytest.approx(expected, rel=1e-6)  # float32 convs differ ~1e-8 by batch
        assert r["nats_per_example"] == pytest.approx(-log_p.mean().item(), rel=1e-6)
    assert training.evaluate(model, test_set, 5, "cpu", max_batches=2)["examples"] == 10


def test_conditional_model_trains_and_needs_labels(tmp_path):
    train_set, test_set = toy_sets()
    metrics = training.train(make_config(tmp_path / "c", "--steps", "2"), tiny_model(num_classes=2), train_set,
                        test_set)
    assert math.isfinite(metrics["test_bits_per_dim"])
    unlabelled = ImageDataset("toy-nolabels", train_set.x, None, levels=2)
    with pytest.raises(UserError, match="has no labels"):
        training.train(make_config(tmp_path / "d", "--steps", "2"), tiny_model(num_classes=2), unlabelled, None)
    assert not (tmp_path / "d").exists()  # bad input: nothing written


def test_sigterm_checkpoints_and_resume_is_bit_identical(tmp_path):
    """6 steps straight vs SIGTERM during step 3, then --resume: same weights, optimizer state and EMA."""
    flags = ["--steps", "6", "--ema", "0.9", "--optimizer", "adamw", "--weight-decay", "0.1",
             "--grad-clip", "0.5", "--checkpoint-every", "4"]  # 20 examples / batch 8: two new epochs
    train_set, test_set = toy_sets()
    training.train(make_config(tmp_path / "a", *flags), tiny_model(), train_set, test_set)

    with sigterm_at_batch(train_set, 3) as drawn, pytest.raises(SystemExit) as stop:
        training.train(make_config(tmp_path / "b", *flags), tiny_model(), train_set, test_set)
    assert stop.value.code == 143
    assert [s for s, _ in train_state.list_checkpoints(tmp_path / "b")] == [3]  # saved on the way out
    assert signal.getsignal(signal.SIGTERM) is not None and drawn[0] == 3

    training.train(make_config(tmp_path / "b", *flags, "--resume"), tiny_model(seed=99), train_set, test_set)
    for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors"):
        assert_same_tensors(weights(tmp_path / "a/checkpoints/step-000006" / name),
                            weights(tmp_path / "b/checkpoints/step-000006" / name))
    a = json.loads((tmp_path / "a/checkpoints/step-000006/state.json").read_text())
    b = json.loads((tmp_path / "b/checkpoints/step-000006/state.json").read_text())
    assert (a["epoch"], a["epoch_offset"]) == (b["epoch"], b["epoch_offset"]) == (2, 16)
    assert a["lr"] == b["lr"]


def test_resume_extends_a_finished_run(tmp_path):
    """--steps 3, then --resume --steps 6 equals --steps 6 when the schedule does not depend on --steps."""
    flags = ["--warmup-steps", "0", "--min-lr", "1e-2"]  # constant learning rate
    train_set, test_set = toy_sets()
    training.train(make_config(tmp_path / "a", "--steps", "6", *flags), tiny_model(), train_set, test_set)
    training.train(make_config(tmp_path / "b", "--steps", "3", *flags), tiny_model(), train_set, test_set)
    metrics = training.train(make_config(tmp_path / "b", "--steps", "6", "--resume", *flags), tiny_model(),
                        train_set, test_set)
    assert metrics["step"] == 6
    assert_same_tensors(weights(tmp_path / "a/model.safetensors"), weights(tmp_path / "b/model.safetensors"))
    with pytest.raises(UserError, match="already at step 6"):
        training.train(make_config(tmp_path / "b", "--steps", "5", "--resume", *flags), tiny_model(), train_set,
                  test_set)


def reseal(folder) -> None:
    """A checkpoint edited by a test gets the manifest of its edited files (else resume rightly refuses it)."""
    from pixelwave import checkpoint

    checkpoint.write_manifest(folder, [p.name for p in folder.iterdir() if p.name != checkpoint.MANIFEST])


def test_a_run_saved_before_label_counts_were_recorded_resumes(tmp_path):
    train_set, test_set = toy_sets()
    training.train(make_config(tmp_path / "a", "--steps", "2"), tiny_model(), train_set, test_set)
    state_path = tmp_path / "a/checkpoints/step-000002/state.json"
    state = json.loads(state_path.read_text())
    counts = torch.bincount(train_set.y, minlength=2).tolist()
    assert state["data"].pop("class_counts") == counts
    state_path.write_text(json.dumps(state))
    reseal(state_path.parent)  # as such a run wrote it: its manifest agrees with its files
    assert training.train(make_config(tmp_path / "a", "--steps", "3", "--resume"), tiny_model(), train_set,
                          test_set)["step"] == 3
    assert json.loads((tmp_path / "a/data.json").read_text())["class_counts"] == counts  # recorded from now on
    state["data"]["class_counts"] = [1, 1]  # a recorded count that differs is still other data
    state_path = tmp_path / "a/checkpoints/step-000003/state.json"
    state_path.write_text(json.dumps({**json.loads(state_path.read_text()), "data": state["data"]}))
    reseal(state_path.parent)
    with pytest.raises(UserError, match="data changed"):
        training.train(make_config(tmp_path / "a", "--steps", "4", "--resume"), tiny_model(), train_set, test_set)


def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path):
    script = tmp_path / "train_toy.py"
    script.write_text(SCRIPT)
    flags = ["--steps", "60", "--checkpoint-every", "1", "--keep-checkpoints", "2", "--ema", "0.5"]
    subprocess.run([sys.executable, str(script), str(tmp_path / "ref"), *flags], env=env(), check=True,
                   capture_output=True, timeout=120)
    out = tmp_path / "killed"
    rng = random.Random()
    kills = []
    for attempt in range(3):
        args = [sys.executable, str(script), str(out), *flags] + (["--resume"] if attempt else [])
        proc = subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        start = train_state.latest_checkpoint(out)
        deadline = time.time() + 60
        while train_state.latest_checkpoint(out) == start and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)  # wait until this attempt has made progress
        delay = rng.uniform(0.0, 0.2)
        time.sleep(delay)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.kill()  # SIGKILL: no handler runs, possibly in the middle of writing a checkpoint
        proc.wait()
        kills.append((delay, train_state.latest_checkpoint(out).name))
        assert len(train_state.list_checkpoints(out)) <= 3  # K, or K + 1 if killed between rename and prune
    subprocess.run([sys.executable, str(script), str(out), *flags, "--resume"], env=env(), check=True,
                   capture_output=True, timeout=120)
    for name in ("model.safetensors", "ema.safetensors"):
        assert_same_tensors(weights(tmp_path / "ref" / name), weights(out / name)), kills
    assert [s for s, _ in train_state.list_checkpoints(out)] == [59, 60]
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]  # temporaries cleaned


def test_sigint_in_a_subprocess_checkpoints_says_so_and_exits_130(tmp_path):
    script = tmp_path / "train_toy.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), str(out), "--steps", "100000", "--checkpoint-every",
                             "50"], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while train_state.latest_checkpoint(out) is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    (line,) = [s for s in stdout.splitlines() if s.startswith("stopped by SIGINT")]
    step = int(line.split("after step ")[1].split(":")[0])
    assert step > 50  # signalled after checkpoint 50 was written: the step it interrupted is saved too
    assert train_state.list_checkpoints(out)[-1][0] == step and f"step-{step:06d}" in line
    assert "Traceback" not in stderr


def test_existing_directory_needs_resume_or_overwrite(tmp_path):
    train_set, test_set = toy_sets()
    out = tmp_path / "run"
    training.train(make_config(out, "--steps", "1"), tiny_model(), train_set, test_set)
    before = weights(out / "model.safetensors")

    with pytest.raises(UserError, match=r"run directory .* exists: pass --resume to continue it or --overw"):
        training.train(make_config(out, "--steps", "2"), tiny_model(), train_set, test_set)
    with pytest.raises(UserError, match="contradict"):
        training.train(make_config(out, "--steps", "2", "--resume", "--overwrite"), tiny_model(), train_set,
                  test_set)
    with pytest.raises(UserError, match="was trained as gated_pixelcnn"):
        training.train(make_config(out, "--steps", "2", "--resume"), tiny_model(hidden=6), train_set, test_set)
    assert_same_tensors(before, weights(out / "model.safetensors"))  # refused: nothing touched

    training.train(make_config(out, "--steps", "2", "--overwrite"), tiny_model(seed=5), train_set, test_set)
    assert [s for s, _ in train_state.list_checkpoints(out)] == [2]

    # --overwrite never deletes a folder that is not a run; --resume does not write into one either.
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    for flag in ("--overwrite", "--resume"):
        with pytest.raises(UserError, match="mine"):
            training.train(make_config(other, "--steps", "1", flag), tiny_model(), train_set, test_set)
    assert [p.name for p in other.iterdir()] == ["thesis.tex"]

    # --resume in an empty or missing folder starts a new run; an unwritable --out is one clear error.
    training.train(make_config(tmp_path / "new", "--steps", "1", "--resume"), tiny_model(), train_set, test_set)
    assert (tmp_path / "new/model.safetensors").is_file()
    with pytest.raises(UserError, match="cannot write the run directory"):
        training.train(make_config(tmp_path / "mine/thesis.tex/run", "--steps", "1"), tiny_model(), train_set,
                  test_set)


def test_bad_flags_are_one_line_errors_before_anything_is_written(tmp_path):
    train_set, test_set = toy_sets()
    for flags, message in [(["--steps", "0"], "--steps"), (["--batch-size", "21"], "larger than the"),
                           (["--lr", "nan"], "--lr"), (["--lr", "1e-3", "--min-lr", "1e-2"], "--min-lr"),
                           (["--ema", "1"], "--ema"), (["--keep-checkpoints", "0"], "--keep-checkpoints"),
                           (["--grad-clip", "-1"], "--grad-clip"), (["--device", "cuda"], "--device cuda")]:
        if flags[-1] == "cuda" and torch.cuda.is_available():
            continue
        with pytest.raises(UserError, match=message):
            training.train(make_config(tmp_path / "bad", *flags), tiny_model(), train_set, test_set)
        assert not (tmp_path / "bad").exists()


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
    train_set, test_set = toy_sets()
    model = tiny_model()
    real_forward, calls = model.forward, {"n": 0}

    def forward_nan_at_third_call(*args, **kwargs):
        calls["n"] += 1
        log_p = real_forward(*args, **kwargs)
        return log_p * float("nan") if calls["n"] == 3 else log_p

    model.forward = forward_nan_at_third_call
    out = tmp_path / "run"
    with pytest.raises(training.NonFiniteLoss, match=r"loss is nan at step 3.*step-000002") as err:
        training.train(make_config(out, "--steps", "6", "--checkpoint-every", "1"), model, train_set, test_set)
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)
    assert [s for s, _ in train_state.list_checkpoints(out)] == [1, 2]  # the bad step was not saved
    last = weights(out / "checkpoints/step-000002/model.safetensors")
    assert all(torch.isfinite(t).all() for t in last.values())
    assert_same_tensors(last, weights(out / "model.safetensors"))
    # ... and the run continues from there.
    training.train(make_config(out, "--steps", "4", "--resume"), tiny_model(), train_set, test_set)
    assert [s for s, _ in train_state.list_checkpoints(out)][-1] == 4


def test_training_state_holds_no_pickle_and_refuses_one(tmp_path):
    train_set, test_set = toy_sets()
    out = tmp_path / "run"
    training.train(make_config(out, "--steps", "2", "--ema", "0.9", "--checkpoint-every", "1"), tiny_model(),
              train_set, test_set)
    for path in out.rglob("*"):
        if path.is_dir() or path.parent.name == "tb":
            continue
        assert path.suffix in (".json", ".safetensors") or path.name == ".lock", path  # the lock file holds JSON
        head = path.read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK", path  # neither a pickle nor a torch.save zip
        if path.suffix != ".safetensors":
            json.loads(path.read_text())
        else:
            load_file(str(path))

    # Plant a pickle payload where the optimizer state goes: resuming refuses it and it never runs.
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    planted = out / "checkpoints/step-000002"
    torch.save({"state": Payload()}, planted / "optimizer.safetensors")
    with pytest.raises(UserError, match="optimizer.safetensors"):  # the reader refuses it, even unverified
        train_state.load_checkpoint(planted, verify=False)
    with pytest.raises(UserError, match="step-000002/optimizer.safetensors is damaged"):  # so does the manifest
        train_state.load_checkpoint(planted)
    # --resume skips it (naming the file), continues from step 1 and sets it aside.
    training.train(make_config(out, "--steps", "3", "--resume"), tiny_model(), train_set, test_set)
    assert [s for s, _ in train_state.list_checkpoints(out)] == [1, 3]
    assert (out / "checkpoints/step-000002.damaged/optimizer.safetensors").is_file()
    assert not marker.exists()


def test_tensorboard_scalars_and_sample_grid(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_set, test_set = toy_sets()
    out = tmp_path / "run"
    training.train(make_config(out, "--steps", "2", "--eval-every", "1", "--samples", "4", "--bf16"),
              tiny_model(num_classes=2), train_set, test_set)
    events = EventAccumulator(str(out / "tb")).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/bits_per_dim", "test/bits_per_dim", "lr", "throughput/examples_per_second",
            "throughput/dims_per_second"} <= scalars
    assert [e.step for e in events.Scalars("test/bits_per_dim")] == [1, 2]
    (image,) = events.Images("samples")
    assert (image.height, image.width) == (2 * 7 + 1, 2 * 7 + 1)  # 4 samples, a class a column, 6x6 + pad


def test_grid_layout():
    """The sample grid (TensorBoard's and `pixelwave sample`'s): images in rows of nrow, a grey frame."""
    import numpy as np

    from pixelwave.viz import image_grid

    x = torch.tensor([0, 1, 1, 0]).view(4, 1, 1, 1).expand(4, 1, 2, 2)
    grid = np.asarray(image_grid(x, levels=2, nrow=2, pad=1))
    assert grid.shape == (7, 7)
    assert grid[1, 1] == 0 and grid[1, 4] == 255 and grid[4, 1] == 255 and grid[4, 4] == 0 and grid[0, 0] == 128
    rgb = np.asarray(image_grid(torch.tensor([0, 2, 4]).view(1, 3, 1, 1), levels=5, pad=1))
    assert rgb.shape == (3, 3, 3) and rgb[1, 1].tolist() == [0, 128, 255]


def test_torchrun_two_cpu_processes_match_one(tmp_path):
    script = tmp_path / "train_toy.py"
    script.write_text(SCRIPT)
    flags = ["--steps", "4", "--eval-every", "2", "--checkpoint-every", "2"]
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), *flags], env=env(),
                         capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = subprocess.run([*torchrun, str(script), str(tmp_path / "two"), *flags], env=env(),
                         capture_output=True, text=True, timeout=180)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("done: step 4") == 1  # rank 0 alone logs
    assert "(4 on each of 2 processes)" in two.stdout
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if "tb" not in p.parts)  # noqa: E731
    assert files(tmp_path / "two") == files(tmp_path / "one")
    assert len(list((tmp_path / "two/tb").iterdir())) == 1  # one writer
    # The same global batches, gradients averaged over the ranks: the same weights up to summation order.
    a, b = weights(tmp_path / "one/model.safetensors"), weights(tmp_path / "two/model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    ta = json.loads((tmp_path / "one/checkpoints/step-000004/state.json").read_text())["metrics"]
    tb = json.loads((tmp_path / "two/checkpoints/step-000004/state.json").read_text())["metrics"]
    assert tb["test_examples"] == ta["test_examples"] == 9  # the whole split, shared over ranks, counted once
    assert tb["test_bits_per_dim"] == pytest.approx(ta["test_bits_per_dim"], rel=1e-4)


def toy_audio(n_utts: int = 4, length: int = 256, mel: bool = True):
    """Random 16-level codes in 2 speakers, with 4 mel bands every 16 samples: the AudioDataset protocol."""
    from pixelwave.data.audio import AudioDataset

    g = torch.Generator().manual_seed(7)
    lengths = torch.full((n_utts,), length)
    mel_options = dict(n_mels=4, hop_length=16, n_fft=64, f_min=0.0, f_max=4000.0) if mel else None

    def split(name):
        return AudioDataset(
            name="toy-audio", split=name, sample_rate=8000, levels=16, crop=64,
            codes=torch.randint(0, 16, (n_utts * length,), generator=g, dtype=torch.uint8),
            offsets=torch.arange(n_utts) * length, lengths=lengths, speaker=torch.arange(n_utts) % 2,
            speakers=["a", "b"], mel=torch.randn(n_utts * length // 16, 4, generator=g) if mel else None,
            frame_offsets=torch.arange(n_utts) * (length // 16) if mel else None, mel_options=mel_options,
            random_crops=name == "train")

    return split("train"), split("test")


def tiny_wavenet(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return pw.models.WaveNet(**{"layers": 2, "stacks": 1, "residual_channels": 4, "gate_channels": 4,
                                "skip_channels": 4, "levels": 16, **kw})


def test_audio_model_logs_bits_per_sample_and_a_clip_per_speaker(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_set, test_set = toy_audio()
    out = tmp_path / "run"
    metrics = training.train(make_config(out, "--steps", "2", "--eval-every", "1", "--samples", "1", "--sample-seconds",
                                  "0.01"), tiny_wavenet(num_speakers=2, cond_channels=4, hop_length=16),
                        train_set, test_set)
    assert metrics["test_examples"] == 16  # 4 utterances x 4 whole crops of 64
    events = EventAccumulator(str(out / "tb"), size_guidance={"audio": 0}).Reload()
    assert {"train/bits_per_sample", "test/bits_per_sample"} <= set(events.Tags()["scalars"])
    assert "train/bits_per_dim" not in events.Tags()["scalars"]
    # the mel model re-speaks a held-out utterance per speaker, logged beside the recording, with its MCD
    assert sorted(events.Tags()["audio"]) == ["recordings/a", "recordings/b", "samples/a", "samples/b"]
    assert "speech/mcd_db" in events.Tags()["scalars"]
    (clip,) = events.Audio("samples/b")
    assert clip.sample_rate == 8000 and clip.length_frames == 80  # 0.01 s, 5 whole mel frames of 16


def test_audio_conditions_must_match_the_model(tmp_path):
    train_set, test_set = toy_audio()
    # A model without mel conditioning or speakers trains on the same batches: cond and speaker are dropped.
    metrics = training.train(make_config(tmp_path / "plain", "--steps", "1", "--samples", "1", "--sample-seconds",
                                  "0.001"), tiny_wavenet(), train_set, test_set)
    assert math.isfinite(metrics["test_bits_per_dim"])
    cases = [(tiny_wavenet(cond_channels=5, hop_length=16), "cond_channels=5"),
             (tiny_wavenet(cond_channels=4, hop_length=8), "hop_length=8"),
             (tiny_wavenet(levels=256), "levels=256")]
    for model, message in cases:
        with pytest.raises(UserError, match=message):
            training.train(make_config(tmp_path / "bad", "--steps", "1"), model, train_set, test_set)
    no_mel, _ = toy_audio(mel=False)
    with pytest.raises(UserError, match="no mel features"):
        training.train(make_config(tmp_path / "bad", "--steps", "1"), tiny_wavenet(cond_channels=4, hop_length=16),
                  no_mel, None)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_learns_binary_mnist(tmp_path):
    """A tiny Gated PixelCNN, 200 steps (~20 s) on the real MNIST sample: held-out bits/dim well under the
    0.57 of a model that knows only the fraction of ink and the 0.38 of one that knows each pixel's own
    frequency (measured: 0.146 after 200 steps; bound 0.2)."""
    from pixelwave.data.images import load_images

    train_set = load_images("mnist-sample-binary", "train")
    test_set = load_images("mnist-sample-binary", "test")
    ink = train_set.x.float().mean().item()
    marginal = -(ink * math.log2(ink) + (1 - ink) * math.log2(1 - ink))
    assert marginal > 0.5
    torch.manual_seed(0)
    model = pw.models.GatedPixelCNN(channels=1, levels=2, hidden=16, layers=4, kernel_size=5)
    metrics = training.train(make_config(tmp_path / "mnist", "--steps", "200", "--batch-size", "32", "--lr", "3e-3",
                                  "--warmup-steps", "20", "--log-every", "50"), model, train_set, test_set)
    assert metrics["test_examples"] == 500
    assert metrics["test_bits_per_dim"] < 0.2 < marginal


@pytest.mark.parametrize("native", [True, False])
def test_bf16_notes_a_cpu_without_native_bfloat16(tmp_path, capsys, monkeypatch, native):
    """--bf16 on a CPU that would emulate bfloat16 says so (it is then slower than float32); it still trains."""
    import types

    fake = types.SimpleNamespace(_is_mkldnn_bf16_supported=lambda: native)
    monkeypatch.setattr(torch.ops, "mkldnn", fake)
    train_set, test_set = toy_sets()
    training.train(make_config(tmp_path / "run", "--steps", "1", "--bf16"), tiny_model(), train_set, test_set)
    assert ("no native bfloat16" in capsys.readouterr().out) is (not native)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_reuse_freed_memory_stops_refaulting_large_tensors():
    """A 64 MB tensor allocated, written and freed 8 times: by default every round page-faults it in afresh;
    after reuse_freed_memory() rounds reuse the memory a previous round freed and fault nothing. How many rounds
    do depends on the machine, not on us: a laptop saw every round after the first reuse, while CI saw
    [16315, 0, 16384, 16384, 16384, 0, ...] (the kernel can take pages back from a process, e.g. NUMA-balancing
    hinting faults or a memory balloon, and those faults count too). So what is pinned is the difference the
    setting makes: by default no round is reused; tuned, at least one is. Fresh processes: the setting is
    process-wide."""
    import subprocess

    code = textwrap.dedent("""
        import resource, sys, torch
        from pixelwave.runtime import reuse_freed_memory
        if sys.argv[1] == "tuned":
            assert reuse_freed_memory()
        faults = []
        for _ in range(8):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            torch.ones(16 << 20)  # 64 MB, freed at once
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        print(*faults)
    """)
    faults = {mode: [int(n) for n in subprocess.run([sys.executable, "-c", code, mode], capture_output=True,
                                                    text=True, check=True).stdout.split()]
              for mode in ("default", "tuned")}
    per_round = min(faults["default"])  # 16,384 with 4 KB pages; 32 where transparent huge pages are "always"
    assert per_round >= (64 << 20) // (2 << 20), faults  # by default every round faults the whole tensor in
    reused = [n <= 0.05 * per_round + 2 for n in faults["tuned"][1:]]
    assert any(reused), faults  # tuned: some round found the freed memory and faulted nothing in


def test_the_old_namespace_api_still_trains_and_warns(tmp_path):
    """pixelwave.train.run(Namespace, ...) of release 0.1.0 is a deprecated alias of training.train."""
    from pixelwave import train as old

    parser = argparse.ArgumentParser()
    old.add_train_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "old"), "--steps", "2", "--no-progress", "--samples", "0",
                              "--batch-size", "8", "--eval-every", "0"])
    train_set, test_set = toy_sets()
    with pytest.warns(DeprecationWarning, match="training.train"):
        metrics = old.run(args, tiny_model(), train_set, test_set)
    assert metrics["step"] == 2 and (tmp_path / "old" / "model.safetensors").is_file()
