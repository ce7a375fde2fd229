"""The `tformer` command line."""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tformer", description="Transformer engine for seq2seq models")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print what this build contains (CUDA, BLAS, threads)")
    from .serve.command import add_arguments as add_serve_arguments

    add_serve_arguments(sub.add_parser("serve", help="serve a model over HTTP (POST /translate)",
                                       description="HTTP translation service with dynamic batching"))
    args = parser.parse_args(argv)
    if args.command == "info":
        import tformer

        json.dump(tformer.build_info(), sys.stdout, indent=2)
        print()
    elif args.command == "serve":
        from .serve.command import run

        return run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
