"""Re-train the models shipped in src/pixelwave/pretrained/ with the commands on their cards, copy the new
checkpoints into the package and rewrite each card with what this machine measured. `make pretrained` runs it.

    .venv/bin/python tools/pretrained.py                  # every shipped model (about 10 CPU minutes each)
    .venv/bin/python tools/pretrained.py mnist-gated      # one
    .venv/bin/python tools/pretrained.py mnist-gated --from-run DIR   # ship DIR, trained here by the card's command
    .venv/bin/python tools/pretrained.py vocoder-lpc --rescore        # only score the shipped checkpoint again

Each card's `train_command` and `eval_command` are the recipe (a new model: write NAME/card.json with `name`,
`description`, `data`, `train_command`, `eval_command`, then run this). The training command writes to the folder
after its --out; the files pw.save writes and the run's data.json are copied from there into the package; then the
eval command runs exactly as recorded (on `pretrained:NAME`) and its figure goes on the card, with the training
time, steps and date from the run's last checkpoint, and this machine (lscpu's model name, the x86-64 ISA level)
and versions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

import pixelwave as pw  # noqa: E402
from pixelwave import pretrained  # noqa: E402

SHIPPED_FILES = ("config.json", "model.safetensors", "data.json")


def split_command(command: str) -> tuple[dict, list[str]]:
    """`VAR=value ... pixelwave ARGS` -> ({VAR: value}, [python, -m, pixelwave, ARGS]): this checkout's pixelwave."""
    words = shlex.split(command)
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    if not words or words[0] != "pixelwave":
        sys.exit(f"pretrained: the command must start with `pixelwave` (after VAR=value settings): {command}")
    return env, [sys.executable, "-m", "pixelwave", *words[1:]]


def run(command: str, capture: bool = False) -> str:
    env, argv = split_command(command)
    print(f"$ {command}", flush=True)
    done = subprocess.run(argv, env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **env}, cwd=ROOT,
                          stdout=subprocess.PIPE if capture else None, text=True)
    if done.returncode != 0:
        sys.exit(f"pretrained: `{command}` failed (exit code {done.returncode})")
    return done.stdout or ""


def out_of(command: str) -> Path:
    words = shlex.split(command)
    if "--out" not in words:
        sys.exit(f"pretrained: the training command has no --out: {command}")
    return ROOT / words[words.index("--out") + 1]


def cpu_name() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        lscpu = ""
    found = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
    return found.group(1).strip() if found else platform.processor() or "unknown"


def isa_level() -> str:
    """The highest x86-64 micro-architecture level this CPU supports, as the dynamic loader reports it."""
    for loader in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-x86-64.so.2"):
        try:
            text = subprocess.run([loader, "--help"], capture_output=True, text=True).stdout
        except OSError:
            continue
        levels = re.findall(r"x86-64-v(\d) \(supported", text)
        if levels:
            return f"x86-64-v{max(levels)}"
    return platform.machine() or "unknown"


def versions() -> dict:
    return dict(pixelwave=pw.__version__, torch=torch.__version__.split("+")[0])


def seal(folder: Path) -> None:
    """The shipped files' manifest (pw.load verifies it), and config.json saying there is one."""
    from pixelwave import checkpoint

    config = json.loads((folder / checkpoint.CONFIG).read_text())
    if config.get("manifest") != checkpoint.MANIFEST:  # a run trained before manifests
        checkpoint.write_json(folder / checkpoint.CONFIG, {**config, "manifest": checkpoint.MANIFEST})
    checkpoint.write_manifest(folder, SHIPPED_FILES)


def ship(name: str, run_dir: Path | None) -> dict:
    folder = pretrained.path(name)
    card = json.loads((folder / pretrained.CARD).read_text())
    if run_dir is None:
        run_dir = out_of(card["train_command"])
        if card.get("data_command") and not out_of(card["data_command"]).exists():
            run(card["data_command"])  # a corpus built from a registry package's tools (e.g. flite)
        run(card["train_command"])
        card.pop("notes", None)  # about the previous run
    if not (run_dir / "checkpoints").is_dir():
        sys.exit(f"pretrained: {run_dir} is not a training run (no checkpoints/)")
    last = max((run_dir / "checkpoints").glob("step-*"))
    state = json.loads((last / "state.json").read_text())
    for file in SHIPPED_FILES:
        shutil.copyfile(run_dir / file, folder / file)
    seal(folder)
    model = pw.load(pretrained.PREFIX + name)
    env, argv = split_command(card["train_command"])
    threads = argv[argv.index("--threads") + 1] if "--threads" in argv else env.get("OMP_NUM_THREADS")
    card.update(
        model=model.model_name,
        machine=dict(cpu=cpu_name(), isa_level=isa_level(), cores=os.cpu_count(),
                     threads=int(threads or torch.get_num_threads())),
        date=datetime.datetime.fromtimestamp((last / "state.json").stat().st_mtime, datetime.UTC).strftime("%Y-%m-%d"),
        training_seconds=round(state["train_seconds"], 1),
        steps=state["step"],
        parameters=sum(p.numel() for p in model.parameters()),
        versions=versions(),
    )
    card.pop("scored", None)  # scored below, with the versions that trained it
    score(card, model)
    (folder / pretrained.CARD).write_text(json.dumps(card, indent=2) + "\n")
    pretrained.card(name)  # every field is there
    held = card["heldout"]
    print(f"{pretrained.PREFIX}{name}: {held['value']} {held['metric']}, {card['steps']} steps in "
          f"{card['training_seconds']:.0f} s; {pretrained.size_on_disk(name) / 1e6:.2f} MB in {folder}")
    return card


def _rounded(value: float | None) -> float | None:
    """A score to 4 decimals; None (a score eval could not compute, e.g. WER without a recognizer) stays None."""
    return None if value is None else round(value, 4)


def score(card: dict, model) -> None:
    """Run the card's eval command and put its held-out figure (and a vocoder's speech scores) on the card."""
    result = json.loads(run(card["eval_command"] + " --json", capture=True))
    metric = "bits/sample" if model.data_kind == "audio" else "bits/dim"
    card["heldout"] = dict(metric=metric, value=round(result["bits_per_dim"], 5), data=result["data"],
                           split=result["split"], examples=result["examples"])
    if "speech_scores" in result:  # a vocoder: its re-spoken held-out utterances, scored (pixelwave.speech_eval)
        scores = result["speech_scores"]
        keep = ("utterances", "stoi", "mcd_db", "wer_recording", "wer_resynthesis")
        per_draw = ("seed", "stoi", "mcd_db", "wer_resynthesis")  # eval --speech-draws N: each draw's, beside the means
        card["speech_scores"] = dict(
            data=result["data"], utterances_per_voice=scores["utterances_per_voice"], seed=scores["seed"],
            **{k: scores[k] for k in ("draws", "seeds") if k in scores}, temperature=scores.get("temperature"),
            **{k: scores[k] for k in ("voiced_temperature", "probability_floor", "draw_shaping") if k in scores},
            voices={v: {**{k: _rounded(x[k]) for k in keep},
                        **({"draws": [{k: _rounded(d[k]) for k in per_draw if k in d} for d in x["draws"]]}
                           if "draws" in x else {})}
                    for v, x in scores["voices"].items()})


def rescore(name: str) -> dict:
    """Score the shipped checkpoint again by its card's eval command (the scorer changed, not the model): the
    figures are replaced and `scored` says when, with which versions; the training fields stay."""
    folder = pretrained.path(name)
    card = json.loads((folder / pretrained.CARD).read_text())
    score(card, pw.load(pretrained.PREFIX + name))
    card["scored"] = dict(date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"), cpu=cpu_name(),
                          isa_level=isa_level(), **versions())
    (folder / pretrained.CARD).write_text(json.dumps(card, indent=2) + "\n")
    pretrained.card(name)
    print(f"{pretrained.PREFIX}{name}: re-scored, {card['heldout']['value']} {card['heldout']['metric']}")
    return card


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="shipped models to re-train (default: all)")
    p.add_argument("--from-run", type=Path, help="ship this run instead of training (one name only)")
    p.add_argument("--rescore", action="store_true",
                   help="do not train: score the shipped checkpoints again by their cards' eval commands")
    args = p.parse_args(argv)
    names = args.names or pretrained.names()
    if args.from_run and (len(names) != 1 or args.rescore):
        p.error("--from-run takes exactly one model name, and no --rescore")
    for name in names:
        if args.rescore:
            rescore(name)
        else:
            ship(name, args.from_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
