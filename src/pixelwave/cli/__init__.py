"""pixelwave command line: train | eval | sample | complete | reconstruct | generate | resynthesize | data |
compare | receptive-field | verify, a module per group of commands:

    common.py    the parser, argument types, devices, output files, reading checkpoints and their data
    options.py   train's settings: defaults < --preset < --config file < typed flags, as plain dicts
    train.py     train          evaluate.py  eval
    images.py    sample, complete, reconstruct, receptive-field
    audio.py     generate, resynthesize, data speech
    verify.py    verify
    (compare lives in pixelwave.compare)

Every user mistake becomes one line on stderr and exit code 2 (UserError); nothing already saved is touched.
A warning (such as a checkpoint loaded without a manifest to check it against) is one line on stderr too.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from pixelwave.cli import audio, evaluate, images, train, verify
from pixelwave.cli.common import Parser
from pixelwave.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from pixelwave.compare import add_compare_arguments, run_compare

    parser = Parser(prog="pixelwave", description="Deep autoregressive models: train, score, sample.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    train.add_parser(sub)
    evaluate.add_parser(sub)
    images.add_parsers(sub)
    audio.add_parsers(sub)
    p = sub.add_parser("compare", help="the seed's table: several models, equal size and CPU budget",
                       epilog="example: pixelwave compare --budget-minutes 2 --out runs/compare")
    add_compare_arguments(p)
    p.set_defaults(func=lambda args, parser: run_compare(args))
    verify.add_parser(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"pixelwave: warning: {str(message).splitlines()[0]}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            parser = build_parser()
            args = parser.parse_args(argv)
            return args.func(args, parser)
    except UserError as e:
        print(f"pixelwave: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pixelwave: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
