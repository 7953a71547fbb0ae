"""Export a checkpoint's network for deployment:
``python export.py ckpt_path=…/best.ckpt format=onnx|pt2``.

The exported model maps a normalised ``N x C x H x W`` float batch to logits, for any batch size.
``pt2``: ``torch.export`` (an ``ExportedProgram`` saved with ``torch.export.save``; load it with
``torch.export.load(path).module()``). ``onnx``: PyTorch's dynamo-based ONNX exporter (needs
``onnxscript``: ``pip install "cnnzoo[export]"``). Either is checked against PyTorch on a batch of
random inputs of another batch size than the one traced — the reloaded program, or the ONNX file
in onnxruntime (without it only the ONNX graph is checked). A JSON file beside it records the
preprocessing: input shape, mean, std and class names.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig

from cnnzoo import console
from cnnzoo.config import CONFIG_PATH
from cnnzoo.errors import UserError, user_errors

# torch is imported inside the functions that use it, so that `--help`, `--cfg job` and tab
# completion print without it (tests/test_startup.py)
if TYPE_CHECKING:
    from torch import Tensor, nn
    from torch.export import Dim

__all__ = ["FORMATS", "export", "export_net", "main", "to_onnx", "to_pt2"]

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}

Runner = Callable[["Tensor"], "Tensor"]

# ONNX files are protobufs, capped at 2 GiB: larger weights go to a .data file beside the model
ONNX_SINGLE_FILE_BYTES = 1 << 30


def _dynamic_batch() -> tuple[dict[int, Dim]]:
    """The ``dynamic_shapes`` of a net with one input whose dimension 0 is any batch size."""
    from torch.export import Dim

    return ({0: Dim("batch", min=1)},)


def to_pt2(net: nn.Module, example: Tensor, path: Path) -> Runner:
    """``torch.export`` with a dynamic batch dimension, saved to ``path``; returns the program
    loaded back from the file."""
    import torch

    program = torch.export.export(net, (example,), dynamic_shapes=_dynamic_batch())
    torch.export.save(program, str(path))
    return torch.export.load(str(path)).module()


def to_onnx(net: nn.Module, example: Tensor, path: Path, opset: int | None = None) -> Runner | None:
    """The dynamo-based ONNX export (input ``images``, output ``logits``, dynamic batch) to
    ``path``; returns an onnxruntime session's forward, or None without onnxruntime."""
    import torch

    try:
        import onnxscript  # noqa: F401  (the dynamo exporter's dependency)
    except ImportError:
        raise UserError(
            'format=onnx needs the package onnxscript: pip install "cnnzoo[export]"'
        ) from None
    size = sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()])
    torch.onnx.export(
        net,
        (example,),
        str(path),
        dynamo=True,
        opset_version=opset,
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=_dynamic_batch(),
        external_data=size > ONNX_SINGLE_FILE_BYTES,
    )
    try:
        import onnx

        onnx.checker.check_model(str(path))
    except ImportError:
        pass
    try:
        import onnxruntime
    except ImportError:
        log.warning(
            "onnxruntime is not installed, so the ONNX outputs were not compared with PyTorch's; "
            'install it with `pip install "cnnzoo[export]"`'
        )
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


def export_net(
    net: nn.Module,
    path: Path,
    *,
    fmt: str,
    input_shape: Sequence[int],
    opset: int | None = None,
    check_batch_size: int = 8,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> dict[str, Any]:
    """Write ``net`` (in eval mode, on the CPU) as ``fmt`` to ``path``, traced on a batch of 2
    ``input_shape`` images, and check it on ``check_batch_size`` others: a mismatch beyond
    ``atol``/``rtol`` is an error. Returns the path, the format and the largest difference."""
    import torch

    if fmt not in FORMATS:
        raise UserError(f"format={fmt}: choose one of {', '.join(FORMATS)}")
    if check_batch_size == 2:
        raise UserError("check_batch_size=2 is the traced batch size: pick another to check it")
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, *input_shape, generator=generator)
    run = to_pt2(net, example, path) if fmt == "pt2" else to_onnx(net, example, path, opset)
    record: dict[str, Any] = {"path": str(path), "format": fmt, "max_abs_diff": None}
    if run is None:
        return record
    # a different batch size than the example's: the batch dimension must not be baked in
    batch = torch.randn(check_batch_size, *input_shape, generator=generator)
    with torch.no_grad():
        expected, actual = net(batch), run(batch)
    record["max_abs_diff"] = float((expected - actual).abs().max())
    if not torch.allclose(actual, expected, rtol=rtol, atol=atol):
        raise RuntimeError(
            f"the exported {fmt} model differs from PyTorch by up to "
            f"{record['max_abs_diff']:.3g} (atol={atol}, rtol={rtol})"
        )
    log.info(
        "%s reproduces PyTorch on a batch of %d (max |diff| %.2g)",
        path,
        len(batch),
        record["max_abs_diff"],
    )
    return record


@console.torch_grad_mode("no_grad")
def export(cfg: DictConfig) -> dict[str, Any]:
    """Write the model in ``cfg.format`` and return where, with the largest output difference."""
    if cfg.format not in FORMATS:
        raise UserError(f"format={cfg.format}: choose one of {', '.join(FORMATS)}")
    from cnnzoo.checkpoint import load_for_inference

    model, datamodule = load_for_inference(cfg)
    net = model.net.float().cpu().eval()
    ckpt_path = Path(cfg.ckpt_path)
    path = Path(cfg.output or ckpt_path.with_suffix(FORMATS[cfg.format]))
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (datamodule.in_channels, datamodule.image_size, datamodule.image_size)
    record = export_net(
        net,
        path,
        fmt=cfg.format,
        input_shape=shape,
        opset=cfg.opset,
        check_batch_size=int(cfg.check_batch_size),
        atol=cfg.atol,
        rtol=cfg.rtol,
    )
    names = getattr(datamodule, "class_names", None)
    preprocessing = {
        "input": "images",
        "input_shape": ["batch", *shape],
        "mean": list(datamodule.mean),
        "std": list(datamodule.std),
        "pixel_scale": "divide uint8 pixels by 255, then subtract mean and divide by std",
        "class_names": [str(name) for name in names] if names else None,
    }
    path.with_suffix(path.suffix + ".json").write_text(json.dumps(preprocessing, indent=2) + "\n")
    log.info("Wrote %s (+ %s.json with the preprocessing)", path, path.name)
    return record


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export")
def _main(cfg: DictConfig) -> None:
    with user_errors():
        export(cfg)


def main() -> None:
    console.prepare_command_line()
    console.quiet_third_party_messages()
    _main()


if __name__ == "__main__":
    main()
