"""pixelwave verify: check every checkpoint of a run directory, and its final model, against their manifests."""

from __future__ import annotations

from pathlib import Path

from pixelwave import checkpoint
from pixelwave.cli.common import add_command
from pixelwave.errors import UserError

EXAMPLE = "pixelwave verify runs/demo"


def add_parser(sub) -> None:
    p = add_command(sub, "verify", "check a run's checkpoints (or a model directory) against their manifests",
                    EXAMPLE, threads=False)
    p.description += " Exit code 0: every checkpoint is good; 1: something is damaged; 2: bad input."
    p.add_argument("directory", help="a run directory (--out of train) or a model directory (pixelwave.save)")
    p.set_defaults(func=cmd_verify)


def folders(root: Path) -> list[Path]:
    """The checkpoints of `root` (set-aside damaged ones too), oldest first, then `root` itself if it holds a
    model (a run directory's final model, or a model directory)."""
    found = sorted(p for p in (root / "checkpoints").glob("step-*") if p.is_dir())
    if (root / checkpoint.CONFIG).is_file() or (root / checkpoint.MANIFEST).is_file():
        found.append(root)
    return found


def status(folder: Path) -> tuple[str, str]:
    """("good" | "damaged" | "unverified", the line that says so) for one checkpoint or model folder."""
    try:
        files = checkpoint.verify_files(folder)
    except checkpoint.DamagedCheckpoint as e:
        return "damaged", f"DAMAGED     {e}"
    if files is None:
        return "unverified", f"unverified  {folder}: no {checkpoint.MANIFEST} (saved by pixelwave 0.1)"
    return "good", f"good        {folder} ({len(files)} files, {sum(f['size'] for f in files.values()):,} bytes)"


def cmd_verify(args, parser) -> int:
    root = Path(args.directory)
    if not root.is_dir():
        raise UserError(f"{root}: no such directory")
    found = folders(root)
    if not found:
        raise UserError(f"{root}: neither a run directory (no checkpoints/step-*) nor a model directory (no "
                        f"{checkpoint.CONFIG})")
    counts = {"good": 0, "damaged": 0, "unverified": 0}
    for folder in found:
        what, line = status(folder)
        if folder.is_dir():  # else pruned, while it was read, by the run that is training
            counts[what] += 1
            print(line)
    print(", ".join(f"{n} {what}" for what, n in counts.items()))
    return 1 if counts["damaged"] else 0
