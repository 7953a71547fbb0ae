"""Export a checkpoint's network for deployment:
``python export.py ckpt_path=…/best.ckpt format=onnx|torchscript``.

The exported model maps a normalised ``N x C x H x W`` float batch to logits (any batch size).
It is checked against PyTorch on a batch of random inputs — TorchScript by reloading it, ONNX with
onnxruntime (``pip install "cnnzoo[export]"``; without it only the ONNX graph is checked). A JSON
file beside it records the preprocessing: input shape, mean, std and class names.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from cnnzoo import console
from cnnzoo.config import CONFIG_PATH
from cnnzoo.errors import UserError, user_errors
from cnnzoo.predict import load_for_inference

__all__ = ["FORMATS", "export", "main"]

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}


def _to_torchscript(net: nn.Module, example: Tensor, path: Path) -> Any:
    traced = torch.jit.trace(net, example)
    traced.save(str(path))
    loaded = torch.jit.load(str(path))
    return lambda x: loaded(x)


def _to_onnx(net: nn.Module, example: Tensor, path: Path, opset: int) -> Any:
    # the TorchScript-based exporter: the dynamo one needs the extra package onnxscript
    torch.onnx.export(
        net,
        (example,),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
    )
    try:
        import onnx

        onnx.checker.check_model(onnx.load(str(path)))
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


@torch.no_grad()
def export(cfg: DictConfig) -> dict[str, Any]:
    """Write the model in ``cfg.format`` and return where, with the largest output difference."""
    if cfg.format not in FORMATS:
        raise UserError(f"format={cfg.format}: choose one of {', '.join(FORMATS)}")
    model, datamodule = load_for_inference(cfg)
    net = model.net.float().cpu().eval()
    ckpt_path = Path(cfg.ckpt_path)
    path = Path(cfg.output or ckpt_path.with_suffix(FORMATS[cfg.format]))
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (datamodule.in_channels, datamodule.image_size, datamodule.image_size)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, *shape, generator=generator)
    if cfg.format == "torchscript":
        run = _to_torchscript(net, example, path)
    else:
        run = _to_onnx(net, example, path, int(cfg.opset))
    record: dict[str, Any] = {"path": str(path), "format": cfg.format, "max_abs_diff": None}
    if run is not None:
        # a different batch size than the example's: the batch dimension must not be baked in
        batch = torch.randn(int(cfg.check_batch_size), *shape, generator=generator)
        expected, actual = net(batch), run(batch)
        record["max_abs_diff"] = float((expected - actual).abs().max())
        if not torch.allclose(actual, expected, rtol=cfg.rtol, atol=cfg.atol):
            raise RuntimeError(
                f"the exported {cfg.format} model differs from PyTorch by up to "
                f"{record['max_abs_diff']:.3g} (atol={cfg.atol}, rtol={cfg.rtol})"
            )
        log.info(
            "%s reproduces PyTorch on a batch of %d (max |diff| %.2g)",
            path,
            len(batch),
            record["max_abs_diff"],
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
