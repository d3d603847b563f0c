"""pixelwave pretrained: the models shipped in the package (`pretrained:NAME` wherever a checkpoint goes)."""

from __future__ import annotations

import json

from pixelwave import pretrained
from pixelwave.cli.common import add_command


def add_parser(sub) -> None:
    p = add_command(sub, "pretrained", "the models shipped in the package (pretrained:NAME): list, or one's card",
                    "pixelwave pretrained mnist-gated")
    p.add_argument("name", nargs="?", help="a shipped model: print its card (default: list them all)")
    p.add_argument("--json", action="store_true", help="print JSON: the list, or the card as shipped")
    p.set_defaults(func=cmd_pretrained)


def cmd_pretrained(args, parser) -> int:
    if args.name is not None:
        card = pretrained.card(args.name)  # an unknown name: one line listing the shipped ones
        print(json.dumps(card, indent=2) if args.json else format_card(card, pretrained.size_on_disk(args.name)))
        return 0
    rows = [(name, pretrained.card(name), pretrained.size_on_disk(name)) for name in pretrained.names()]
    if args.json:
        print(json.dumps([dict(name=name, model=c["model"], description=c["description"], heldout=c["heldout"],
                               bytes=size) for name, c, size in rows]))
        return 0
    table = [("name", "model", "held-out", "size", "what it is")]
    table += [(f"{pretrained.PREFIX}{name}", c["model"], heldout(c["heldout"]), megabytes(size), c["description"])
              for name, c, size in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[4])
    print(f"\n`pixelwave pretrained NAME` prints a model's card; `{pretrained.PREFIX}NAME` goes wherever a "
          f"checkpoint does (sample, complete, eval, generate, ...; pw.load in Python).")
    return 0


def heldout(h: dict) -> str:
    return f"{h['value']:.4f} {h['metric']} ({h['data']} {h['split']})"


def megabytes(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


def format_card(c: dict, size: int) -> str:
    m, h, v = c["machine"], c["heldout"], c["versions"]
    minutes = c["training_seconds"] / 60
    lines = [
        f"{pretrained.PREFIX}{c['name']}: {c['description']}",
        f"  model       {c['model']}, {c['parameters']:,} parameters, {megabytes(size)} on disk",
        f"  data        {c['data']}",
        f"  held-out    {h['value']:.4f} {h['metric']} on the {h['split']} split of {h['data']} "
        f"({h['examples']} examples)",
        f"  trained     {c['steps']} steps, {minutes:.1f} minutes of training, {c['date']}",
        f"  machine     {m['cpu']} ({m['isa_level']}, {m['cores']} cores), {m['threads']} thread(s)",
        f"  versions    pixelwave {v['pixelwave']}, torch {v['torch']}",
        "  reproduce   " + (c["data_command"] + "\n              " if c.get("data_command") else "")
        + c["train_command"],
        "              " + c["eval_command"],
    ]
    if c.get("temperature"):
        floor = f", probability floor {c['probability_floor']}" if c.get("probability_floor") else ""
        floor += f", draw shaping {c['draw_shaping']}" if c.get("draw_shaping") else ""
        lines.append(f"  sampling    temperature {c['temperature']}{floor} (the defaults of generate, resynthesize, "
                     f"say, eval)")
    if c.get("voices"):
        lines.append(f"  voices      trained on {', '.join(c['voices'])}")
    if c.get("speech_scores"):
        sc = c["speech_scores"]
        floor = f", floor {sc['probability_floor']}" if sc.get("probability_floor") else ""
        floor += f", draw shaping {sc['draw_shaping']}" if sc.get("draw_shaping") else ""
        lines.append(f"  speech      {sc['utterances_per_voice']} held-out utterances per voice of {sc['data']}, "
                     f"re-spoken at temperature {sc['temperature']}{floor}: voice STOI, WER re-spoken (recording)")
        lines += [f"              {voice:<8} {x['stoi']:.3f}  {x['wer_resynthesis']:.3f} ({x['wer_recording']:.3f})"
                  for voice, x in sc["voices"].items()]
    if c.get("notes"):
        lines.append(f"  notes       {c['notes']}")
    return "\n".join(lines)
