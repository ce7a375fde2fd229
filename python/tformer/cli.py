"""The `tformer` command line."""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tformer", description="Transformer engine for seq2seq models")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print what this build contains (CUDA, BLAS, threads)")
    args = parser.parse_args(argv)
    if args.command == "info":
        import tformer

        json.dump(tformer.build_info(), sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
