"""pixelwave command line: train | eval | sample | complete | reconstruct | generate | resynthesize | data |
compare | receptive-field | verify, a module per group of commands:

    common.py    the parser, argument types, devices, output files, reading checkpoints and their data
    options.py   train's settings: defaults < --preset < --config file < typed flags, as plain dicts
    train.py     train          evaluate.py  eval
    images.py    sample, complete, reconstruct, receptive-field
    audio.py     generate, resynthesize, data speech
    pretrained.py  pretrained (the models shipped in the package)
    verify.py      verify
    (compare lives in pixelwave.compare)

Every user mistake becomes one line on stderr and exit code 2 (UserError); nothing already saved is touched.
A warning (such as a checkpoint loaded without a manifest to check it against) is one line on stderr too.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import torch

from pixelwave import runtime
from pixelwave.cli import audio, evaluate, images, pretrained, train, verify
from pixelwave.cli.common import Parser, add_command
from pixelwave.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from pixelwave.compare import add_compare_arguments, run_compare

    parser = Parser(prog="pixelwave")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser,
                                help=argparse.SUPPRESS)  # the overview below lists the commands
    train.add_parser(sub)
    evaluate.add_parser(sub)
    images.add_parsers(sub)
    audio.add_parsers(sub)
    pretrained.add_parser(sub)
    p = add_command(sub, "compare", "the seed's table: several models, equal size and CPU budget",
                    "pixelwave compare --budget-minutes 2 --out runs/compare")
    add_compare_arguments(p)
    p.set_defaults(func=lambda args, parser: run_compare(args))
    verify.add_parser(sub)
    parser.usage = "pixelwave COMMAND [options]"  # set after the commands: their usage lines start with the prog
    commands = "\n".join(f"  {name:<16} {p.what}\n  {'':<16} {p.example}" for name, p in sub.choices.items())
    parser.description = (
        "Deep autoregressive models -- PixelCNN, Gated PixelCNN, PixelCNN++, PixelRNN, PixelVAE, WaveNet -- with\n"
        "exact likelihoods: train them, score data in bits/dim, sample and complete images, generate speech.\n\n"
        f"commands, each with an example (`pixelwave COMMAND --help` lists its options):\n{commands}")
    parser.epilog = ("start here (a few minutes on a CPU): train the demo model, then draw from it\n"
                     "  pixelwave train --preset demo --out runs/demo\n"
                     "  pixelwave sample runs/demo -n 80 --out samples.png")
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"pixelwave: warning: {str(message).splitlines()[0]}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            parser = build_parser()
            if not argv:  # what argparse does without a required argument (exit 2), with the overview as usage
                print(parser.format_help(), end="", file=sys.stderr)
                return 2
            args = parser.parse_args(argv)
            threads = torch.get_num_threads()
            torch.set_num_threads(getattr(args, "threads", None) or runtime.default_threads())
            try:
                return args.func(args, parser)
            finally:
                torch.set_num_threads(threads)  # as it was: main may be called inside a longer process (tests)
    except UserError as e:
        print(f"pixelwave: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pixelwave: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
