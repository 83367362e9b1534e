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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nanonet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="command")
    from . import demo
    demo.add_arguments(sub.add_parser("demo", help=demo.__doc__.splitlines()[0]))
    if importlib.util.find_spec(__package__ + ".serving") is not None:
        from . import serving
        serving.add_arguments(sub.add_parser("serve", help=serving.__doc__.splitlines()[0]))
    from .interchange import onnx as onnx_export
    onnx_export.add_arguments(sub.add_parser("export", help="write a saved model as an ONNX "
                                             "file (needs nanonet[onnx])"))

    from . import bench
    bench.add_arguments(sub.add_parser("info", help="print the CPU, SIMD paths, self-check, "
                                                    "threads and build"),
                        sub.add_parser("bench", help="a quick benchmark against NumPy (and "
                                                     "PyTorch when installed)"))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
