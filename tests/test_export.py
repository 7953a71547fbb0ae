"""`cnnzoo.export` in-process: every zoo net, at the size the small stem is for, exports with
`torch.export` (.pt2) and with the dynamo-based ONNX exporter, each with a dynamic batch
dimension, and the exported model reproduces PyTorch on a batch of another size.

The nets are built and saved with torch here (no training): what matters is the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnzoo.errors import UserError
from cnnzoo.export import FORMATS, export_net
from cnnzoo.models import get_spec, model_names
from cnnzoo.models.convnext import ConvNeXt
from cnnzoo.models.densenet import DenseNet

onnxruntime = pytest.importorskip("onnxruntime")  # the `export` extra (part of `dev`)
pytest.importorskip("onnxscript")

SHAPE = (3, 32, 32)  # CIFAR: the small stem's images


# Each family's kinds of layer by default: option-A shortcuts (resnet20), LeNet's pools,
# GoogLeNet's branches and ceil-mode pools, and — in narrow, shallow builds with the same
# layers, 5-10x faster to export — DenseNet's concatenations and ceil-mode transitions and
# ConvNeXt's LayerNorm over permuted maps and padded downsampling. Every registered net (5-60 s
# each on one CPU thread; preact_resnet1001 6 min) runs in `make test-all`.
BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "densenet_narrow": partial(
        DenseNet,
        growth_rate=4,
        block_config=(2, 2, 2),
        num_init_features=8,
        num_classes=10,
        stem="small",
    ),
    "convnext_narrow": partial(
        ConvNeXt, depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), num_classes=10, stem="small"
    ),
    **{name: partial(get_spec(name).build_for, SHAPE, 10) for name in model_names()},
}
# googlenet (~25 s for both formats) runs with the slow ones
REPRESENTATIVE = ["lenet", "resnet20", "densenet_narrow", "convnext_narrow"]


def saved_and_reloaded(name: str, tmp_path: Path) -> nn.Module:
    """The net as training leaves it, for 3x32x32 images and 10 classes: BatchNorm statistics
    that are not the init's (so a wrongly folded BatchNorm shows), the weights saved with torch
    and loaded into a fresh build."""
    torch.manual_seed(0)
    trained = BUILDERS[name]()
    for m in trained.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(trained.state_dict(), tmp_path / "net.pth")
    net = BUILDERS[name]()
    net.load_state_dict(torch.load(tmp_path / "net.pth", weights_only=True))
    return net.eval()


def exported_forward(fmt: str, path: Path):
    if fmt == "pt2":
        return torch.export.load(str(path)).module()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(["logits"], {"images": x.numpy()})[0])


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize(
    "name",
    [n if n in REPRESENTATIVE else pytest.param(n, marks=pytest.mark.slow) for n in BUILDERS],
)
def test_every_zoo_net_exports_with_a_dynamic_batch(name: str, fmt: str, tmp_path: Path) -> None:
    net = saved_and_reloaded(name, tmp_path)
    path = tmp_path / f"{name}{FORMATS[fmt]}"
    # export_net checks the file on a batch of 3 (traced on 2) and raises on a mismatch
    record = export_net(net, path, fmt=fmt, input_shape=SHAPE, check_batch_size=3)
    assert record["max_abs_diff"] is not None

    # read back on its own, at yet another batch size: one image
    forward = exported_forward(fmt, path)
    x = torch.randn(1, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(forward(x), net(x), atol=1e-4, rtol=1e-3)
    # one self-contained file
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["net.pth", path.name])


def test_an_unknown_format_or_the_traced_batch_size_is_refused(tmp_path: Path) -> None:
    net = get_spec("lenet").build_for((1, 28, 28), 10).eval()
    with pytest.raises(UserError, match="choose one of onnx, pt2"):
        export_net(net, tmp_path / "lenet.pt", fmt="torchscript", input_shape=(1, 28, 28))
    with pytest.raises(UserError, match="check_batch_size=2"):
        export_net(net, tmp_path / "x.pt2", fmt="pt2", input_shape=(1, 28, 28), check_batch_size=2)


def test_a_mismatch_beyond_the_tolerance_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cnnzoo.export

    net = get_spec("lenet").build_for((1, 28, 28), 10).eval()
    real = cnnzoo.export.to_pt2
    monkeypatch.setattr(cnnzoo.export, "to_pt2", lambda *a: lambda x: real(*a)(x) + 1e-2)
    with pytest.raises(RuntimeError, match="differs from PyTorch by up to 0.01"):
        export_net(net, tmp_path / "lenet.pt2", fmt="pt2", input_shape=(1, 28, 28))
