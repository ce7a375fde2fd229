"""The `tformer` command line: info, serve, translate, train, demo (each imports its heavy modules
only when it runs)."""
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
    from .translate_cli import add_arguments as add_translate_arguments

    add_translate_arguments(sub.add_parser("translate", help="translate a text file, one sentence per line",
                                           description="Translate text line by line (stdin/stdout by default), "
                                                       "output line-aligned with the input"))
    from .train_cli import add_arguments as add_train_arguments

    add_train_arguments(sub.add_parser("train", help="train a translation model on line-aligned text files",
                                       description="Train a translation model (tokenizer, batching by tokens, "
                                                   "validation BLEU/chrF, atomic checkpoints, --resume)"))
    from .demo.run import add_arguments as add_demo_arguments

    add_demo_arguments(sub.add_parser("demo", help="train a small French -> English model from scratch on the CPU",
                                      description="Train a small French -> English model on sentences made "
                                                  "offline; report held-out exact match, BLEU, chrF"))
    args = parser.parse_args(argv)
    if args.command == "info":
        import tformer

        json.dump(tformer.build_info(), sys.stdout, indent=2)
        print()
    elif args.command == "serve":
        from .serve.command import run

        return run(args)
    elif args.command == "translate":
        from .translate_cli import run

        return run(args)
    elif args.command == "train":
        from .train_cli import run

        return run(args)
    elif args.command == "demo":
        from .demo.run import run

        return run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
