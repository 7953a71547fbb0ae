"""GPU training throughput, cnnzoo vs the plain loop, and the fraction of the chip's bf16 peak.

Run on a GPU machine in one call: ``bash benchmarks/gpu.sh`` (installs the wheels collected by
``../shared/tools/device-wheels.sh``). ``python -m benchmarks.gpu --smoke`` checks the script on a
CPU with tiny sizes. Every case trains with ``bf16-mixed`` and ``channels_last`` on GPU-resident
uint8 data (cut and normalised on the device), eager and with ``torch.compile``; cnnzoo and
the plain loop alternate epoch by epoch in one process.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.run import LIGHTNING, VARIANTS, Case, compose_train, measure_overhead

__all__ = ["main"]

# dense bf16 tensor-core peaks (FLOP/s) from NVIDIA's datasheets, by a substring of the name
PEAK_BF16 = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,  # SXM
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
}


@dataclass(frozen=True)
class GpuCase:
    label: str
    model: str
    datamodule: str
    batch_size: int
    train_size: int
    epochs: int


CASES = (
    GpuCase("ResNet-18, 3x32x32", "resnet18", "RandomImageDataModule", 512, 512 * 40, 3),
    GpuCase("ResNet-50, 3x224x224", "resnet50", "RandomImageNetSizeDataModule", 128, 128 * 16, 2),
)
SMOKE = (
    GpuCase("ResNet-18, 3x32x32 (smoke)", "resnet18", "RandomImageDataModule", 16, 32, 1),
    GpuCase("ResNet-50, 3x224x224 (smoke)", "resnet50", "RandomImageNetSizeDataModule", 2, 2, 1),
)


def _peak(name: str) -> float | None:
    return next((flops for key, flops in PEAK_BF16.items() if key in name), None)


def train_flops_per_image(model: str, datamodule: str, batch_size: int, device: str) -> float:
    """Forward + backward FLOPs per image, counted by ``torch.utils.flop_counter``."""
    cfg = compose_train(
        [f"model={model}", f"data._target_=benchmarks.synthetic.{datamodule}", "paths.output_dir=."]
    )
    net = instantiate(cfg.model.net).to(device)
    size = cfg.data.get("image_size") or instantiate(cfg.data).image_size
    x = torch.randn(batch_size, 3, size, size, device=device)
    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    return counter.get_total_flops() / batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, runs on a CPU")
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument(
        "--budget-s", type=float, default=420, help="skip the cases left after this many seconds"
    )
    args = parser.parse_args()
    begin = time.perf_counter()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if not cuda and not args.smoke:
        parser.error("no GPU found; use --smoke to check the script on a CPU")
    torch.set_float32_matmul_precision("high")
    name = torch.cuda.get_device_name() if cuda else "CPU (smoke)"
    peak = _peak(name) if cuda else None
    # CPUs without bf16 units emulate it slowly: the smoke check runs in float32
    precision = "bf16-mixed" if cuda else "32-true"
    lines = [
        f"# GPU benchmark — {time.strftime('%Y-%m-%d %H:%M')}; {name}; torch {torch.__version__}",
        f"# bf16 dense peak assumed: {peak / 1e12:.0f} TFLOP/s" if peak else "# peak: unknown",
        "",
        "| case | compile | cnnzoo img/s | plain img/s | ratio | TFLOP/s (cnnzoo) | of peak |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    compiles = (False,) if args.no_compile or args.smoke else (False, True)
    cases = SMOKE if args.smoke else CASES
    for case in cases:
        flops = train_flops_per_image(case.model, case.datamodule, 2, device)
        # the progress bar's cost, and Lightning's own (a bare LightningModule), show on the
        # small, fast case only
        runs = [(c, VARIANTS["default"]) for c in compiles]
        if case is cases[0]:
            runs[1:1] = [(False, VARIANTS["no_bar"]), (False, VARIANTS[LIGHTNING])]
        for compile_, variant in runs:
            label = f"{case.label}, {variant.name}"
            if time.perf_counter() - begin > args.budget_s:
                lines.append(f"| {label} | {compile_} | skipped: over --budget-s | | | | |")
                print(lines[-1], flush=True)
                continue
            overrides = (
                f"model={case.model}",
                f"data._target_=benchmarks.synthetic.{case.datamodule}",
                f"data.train_size={case.train_size}",
                f"data.val_size={case.batch_size}",
                f"data.test_size={case.batch_size}",
                f"data.batch_size={case.batch_size}",
                f"++data.gpu_resident={cuda}",
                f"trainer.precision={precision}",
                f"trainer.accelerator={'gpu' if cuda else 'cpu'}",
                "model.channels_last=true",
                f"model.compile={compile_}",
            )
            result = measure_overhead(
                Case(case.label, overrides, case.epochs),
                variant,
                plain_kwargs={
                    "device": device,
                    "precision": precision,
                    "channels_last": True,
                    "compile": compile_,
                },
                per_step=False,
            )
            achieved = flops * result.cnnzoo_ips
            share = f"{achieved / peak:.1%}" if peak else "-"
            lines.append(
                f"| {label} | {compile_} | {result.cnnzoo_ips:,.0f} | "
                f"{result.plain_ips:,.0f} | {result.ratio:.3f} | {achieved / 1e12:.1f} | {share} |"
            )
            print(lines[-1], flush=True)
    lines.append(f"\n{flops_note()} Total {time.perf_counter() - begin:.0f} s.")
    print(lines[-1])
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_results.md").write_text("\n".join(lines) + "\n")


def flops_note() -> str:
    return "FLOPs: forward + backward per image (torch.utils.flop_counter) x cnnzoo img/s."


if __name__ == "__main__":
    main()
