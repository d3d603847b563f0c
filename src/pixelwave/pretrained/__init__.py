"""Models shipped inside the package: `pw.load("pretrained:NAME")`. Nothing is ever downloaded.

Each model is a folder here, `NAME/`, holding the checkpoint as training wrote it (config.json, model.safetensors,
data.json), their manifest.json and `card.json`: what it is, the command that trained it, the machine, the date,
the training time and its held-out figure with the data it was measured on. `tools/pretrained.py` re-trains them
from their cards.

Shipped models are read-only: the writers (`pw.save`, `pixelwave train --out`) call `refuse_write`, which refuses
a `pretrained:` path and any path inside this folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pixelwave.errors import UserError

PREFIX = "pretrained:"
ROOT = Path(__file__).resolve().parent
CARD = "card.json"
# Every card has these; `heldout` and `machine` have the keys below too.
CARD_FIELDS = ("name", "model", "description", "data", "train_command", "eval_command", "machine", "date",
               "training_seconds", "steps", "parameters", "heldout", "versions")
HELDOUT_FIELDS = ("metric", "value", "data", "split", "examples")
MACHINE_FIELDS = ("cpu", "isa_level", "cores", "threads")


class UnknownPretrained(UserError, ValueError):
    """`pretrained:NAME` with a NAME that is not shipped. A UserError (the CLI: one line, exit 2) and a ValueError."""


def names() -> list[str]:
    """The shipped models, sorted: every folder here with a card.json."""
    return sorted(p.name for p in ROOT.iterdir() if (p / CARD).is_file())


def is_pretrained(path: str | os.PathLike) -> bool:
    return os.fspath(path).startswith(PREFIX)


def path(name: str) -> Path:
    """The folder of shipped model `name`; UnknownPretrained (listing the shipped ones) for any other name."""
    if name not in names():
        raise UnknownPretrained(f"unknown pretrained model {name!r} (available: {', '.join(names()) or 'none'})")
    return ROOT / name


def resolve(location: str | os.PathLike) -> str | os.PathLike:
    """`pretrained:NAME` -> the folder of the shipped model; any other path unchanged."""
    if is_pretrained(location):
        return path(os.fspath(location)[len(PREFIX):])
    return location


def card(name: str) -> dict:
    """The model card of shipped model `name` (checked: every field of CARD_FIELDS is there)."""
    file = path(name) / CARD
    info = json.loads(file.read_text())
    missing = [k for k in CARD_FIELDS if k not in info]
    missing += [f"heldout.{k}" for k in HELDOUT_FIELDS if k not in info.get("heldout", {})]
    missing += [f"machine.{k}" for k in MACHINE_FIELDS if k not in info.get("machine", {})]
    if missing:
        raise UserError(f"{file}: the card has no {', '.join(missing)}")
    return info


def _card_value(location: str | os.PathLike, key: str):
    """`key` from a shipped model's card (read unchecked: also while being shipped), else None."""
    if not is_pretrained(location):
        return None
    return json.loads((Path(resolve(location)) / CARD).read_text()).get(key)


def temperature(location: str | os.PathLike) -> float:
    """The sampling temperature to draw from `location` at: what a shipped model's card recommends (an LPC vocoder
    is too loud at 1), else 1."""
    value = _card_value(location, "temperature")
    return 1.0 if value is None else float(value)


def voiced_temperature(location: str | os.PathLike) -> float | None:
    """The temperature in voiced frames that a shipped --pitch vocoder's card recommends, else None."""
    value = _card_value(location, "voiced_temperature")
    return None if value is None else float(value)


def probability_floor(location: str | os.PathLike) -> float:
    """The probability floor of the categorical draw that a shipped model's card recommends, else 0 (none)."""
    value = _card_value(location, "probability_floor")
    return 0.0 if value is None else float(value)


def draw_shaping(location: str | os.PathLike) -> int:
    """The draw shaping (`WaveNet.generate`'s `draw_shaping`) that a shipped model's card recommends, else 0."""
    value = _card_value(location, "draw_shaping")
    return 0 if value is None else int(value)


def trained_voices(location: str | os.PathLike) -> list[str] | None:
    """The voices a shipped vocoder was trained on, as its card lists them (None: no list, e.g. speaker-independent
    or not shipped). A vocoder trained on few voices re-speaks other voices poorly."""
    value = _card_value(location, "voices")
    return None if value is None else [str(v) for v in value]


def size_on_disk(name: str) -> int:
    """Bytes of every file of shipped model `name`, its card included."""
    return sum(p.stat().st_size for p in path(name).rglob("*") if p.is_file())


def refuse_write(location: str | os.PathLike, what: str = "") -> None:
    """UserError if `location` is a shipped model (`pretrained:NAME`, or a path inside the package's pretrained
    folder): they are read-only, so that `pretrained:NAME` always means what its card says."""
    if is_pretrained(location) or Path(location).resolve().is_relative_to(ROOT):
        where = f"{what} {os.fspath(location)}".strip()
        raise UserError(f"{where}: shipped pretrained models are read-only; write to another folder")
