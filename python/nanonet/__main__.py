"""Command line: python -m nanonet <command> (also installed as nanonet).

Commands:
  demo   train the showcase text classifier on real data and print its test accuracy
  serve  answer JSON predict requests for a saved model over HTTP on localhost
  export write a saved model as an ONNX file (nanonet[onnx])
  info   print the CPU, the SIMD path of each kernel family, the self-check, threads and build
  bench  a quick benchmark against NumPy (and PyTorch when installed), threads pinned
"""
from __future__ import annotations

import argparse
import importlib.util
import sys

DESCRIPTION = "nanonet: Keras-style neural networks on the CPU, with C++17/OpenMP kernels."
EPILOG = "Run 'python -m nanonet <command> --help' for a command's options."


def _first_line(doc):
    """A module docstring's first line as help text: no reST markup, capitalised."""
    line = doc.strip().splitlines()[0].replace("``", "").rstrip(".")
    return line[:1].upper() + line[1:]


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m nanonet`` with its subcommands."""
    from . import __version__
    parser = argparse.ArgumentParser(prog="python -m nanonet", description=DESCRIPTION,
                                     epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"nanonet {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="command")
    from . import demo
    text = _first_line(demo.__doc__)
    demo.add_arguments(sub.add_parser("demo", help=text, description=text))
    if importlib.util.find_spec(__package__ + ".serving") is not None:
        from . import serving
        text = _first_line(serving.__doc__)
        serving.add_arguments(sub.add_parser("serve", help=text, description=text))
    from .interchange import onnx as onnx_export
    text = "write a saved model as an ONNX file (needs nanonet[onnx])"
    onnx_export.add_arguments(sub.add_parser("export", help=text, description=text))
    from . import bench
    info = "print the CPU, the SIMD path of each kernel family, the self-check, threads and build"
    quick = "a quick benchmark against NumPy (and PyTorch when installed), threads pinned"
    bench.add_arguments(sub.add_parser("info", help=info, description=info),
                        sub.add_parser("bench", help=quick, description=quick))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
