"""The zoo from the command line.

    python -m cnnzoo.models                                  # every net: params, FLOPs at 3x32x32
    python -m cnnzoo.models --input 3x32x32 --input 3x224x224 --markdown   # the README table
    python -m cnnzoo.models show resnet18 --input 3x32x32    # layer table with output shapes

The stem follows the training rule (``stem_for``: small stem up to 64 px, the paper's ImageNet
stem above); the class count defaults to 10 up to 64 px and 1000 above (``--classes`` sets it).
Counting builds the nets on PyTorch's meta device, so no memory or compute is spent on weights.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

import torch
from torch import nn

from cnnzoo.models.common import stem_for
from cnnzoo.models.registry import get_spec, model_names, specs
from cnnzoo.models.stats import count_flops, count_parameters, format_count, layer_table

USAGE_ERROR = 2


def _classes(shape: tuple[int, int, int], classes: int | None) -> int:
    return classes if classes is not None else (10 if stem_for(shape[1]) == "small" else 1000)


def _build(name: str, shape: tuple[int, int, int], classes: int | None) -> nn.Module:
    return get_spec(name).build_for(shape, _classes(shape, classes))


def parse_input(text: str) -> tuple[int, int, int]:
    """``'3x32x32' -> (3, 32, 32)``."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"input shape {text!r}: expected CxHxW, e.g. 3x32x32")
    channels, height, width = (int(group) for group in match.groups())
    return channels, height, width


def _shape_label(shape: tuple[int, int, int], classes: int | None) -> str:
    return f"{'x'.join(map(str, shape))}, {_classes(shape, classes)} classes"


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(header) + " |")
        # numbers right-aligned, names and papers left
        numeric = [all(row[i][:1].isdigit() for row in rows) for i in range(len(header))]
        print("|" + "|".join("--:" if right else "---" for right in numeric) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


def list_models(shapes: list[tuple[int, int, int]], classes: int | None, *, markdown: bool) -> None:
    header = ["model", "family"]
    for shape in shapes:
        label = _shape_label(shape, classes)
        header += [f"params ({label})", f"FLOPs ({label})"]
    header.append("paper")
    rows = []
    for spec in specs():
        row = [f"`{spec.name}`" if markdown else spec.name, spec.builder.__name__]
        for shape in shapes:
            with torch.device("meta"):
                model = _build(spec.name, shape, classes)
            row += [format_count(count_parameters(model)), format_count(count_flops(model, shape))]
        link = spec.paper_url
        citation = spec.paper.split(",")[0]
        row.append(f"[{citation}]({link})" if markdown and link else f"{citation} {link}")
        rows.append(row)
    _print_table(header, rows, markdown=markdown)


def show_model(name: str, shape: tuple[int, int, int], classes: int | None, *, depth: int) -> None:
    model = _build(name, shape, classes)
    rows = [
        [
            "  " * (row.depth - 1) + row.name,
            row.kind,
            str(list(row.output_shape or "-")),
            f"{row.parameters:,}",
        ]
        for row in layer_table(model, shape, max_depth=depth)
    ]
    _print_table(["layer", "type", "output shape", "params"], rows, markdown=False)
    print(
        f"{name} at {_shape_label(shape, classes)}, stem={stem_for(shape[1])}: "
        f"{count_parameters(model):,} parameters, {format_count(count_flops(model, shape))} FLOPs"
    )


def _parser(show: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cnnzoo.models" + (" show" if show else ""),
        description="Show one network's layers." if show else "List the registered networks.",
    )
    if show:
        parser.add_argument("name", help="a registered model name")
        parser.add_argument("--depth", type=int, default=2, help="module nesting levels shown")
    parser.add_argument(
        "--input",
        action="append",
        type=parse_input,
        help="image shape CxHxW (default 3x32x32)" + ("" if show else "; repeat for more columns"),
    )
    parser.add_argument(
        "--classes", type=int, default=None, help="classes (default: 10 up to 64 px, else 1000)"
    )
    if not show:
        parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    show = bool(argv) and argv[0] == "show"
    if argv and argv[0] in ("show", "list"):
        argv = argv[1:]
    args = _parser(show).parse_args(argv)
    shapes = args.input or [(3, 32, 32)]
    if not show:
        list_models(shapes, args.classes, markdown=args.markdown)
        return 0
    if args.name not in model_names():
        print(
            f"unknown model {args.name!r}; registered models: {', '.join(model_names())}",
            file=sys.stderr,
        )
        return USAGE_ERROR
    if len(shapes) > 1:
        print("show takes one --input", file=sys.stderr)
        return USAGE_ERROR
    show_model(args.name, shapes[0], args.classes, depth=args.depth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
