"""`python -m cnnzoo.models`: the zoo's table, one net's layers, FLOPs, and clear errors."""

from __future__ import annotations

import pytest
import torch

from cnnzoo.models import create_model, get_spec, model_names
from cnnzoo.models.__main__ import main
from cnnzoo.models.stats import count_flops, count_parameters, layer_table


def test_flops_count_multiply_adds_twice() -> None:
    # one 3x3 conv, 1 -> 8 channels, on 4x4 (padding 1): 8 * 16 outputs x 9 multiply-adds
    conv = torch.nn.Conv2d(1, 8, 3, padding=1, bias=False)
    assert count_flops(conv, (1, 4, 4)) == 2 * 8 * 16 * 9


def test_resnet18_costs_what_torchvision_reports() -> None:
    # ResNet-18 at 224x224: 1.82 G multiply-adds (torchvision's model card), 2 FLOPs each
    with torch.device("meta"):
        model = create_model("resnet18")
    assert count_flops(model, (3, 224, 224)) == pytest.approx(2 * 1.814e9, rel=0.01)
    assert count_parameters(model) == 11_689_512


@pytest.mark.slow  # counts FLOPs of all 26 nets (~13 s)
def test_list_shows_every_model_with_params_flops_and_paper(
    capsys: pytest.CaptureFixture,
) -> None:
    assert main(["--markdown", "--input", "1x28x28"]) == 0
    header, _, *rows = capsys.readouterr().out.splitlines()
    assert "params (1x28x28, 10 classes)" in header and "FLOPs (1x28x28, 10 classes)" in header
    assert [row.split("`")[1] for row in rows] == model_names()
    assert all("](https://" in row for row in rows)
    resnet20 = next(row for row in rows if row.startswith("| `resnet20`"))
    assert "| 269.43K |" in resnet20  # 1 input channel: 2 x 144 stem weights fewer than RGB


def test_every_registered_paper_has_a_link() -> None:
    assert all(get_spec(name).paper_url for name in model_names())


def test_show_prints_output_shapes_and_params(capsys: pytest.CaptureFixture) -> None:
    assert main(["show", "resnet20", "--input", "3x32x32"]) == 0
    out = capsys.readouterr().out
    assert "[1, 64, 8, 8]" in out  # the last stage's output
    assert "stem=small" in out and "269,722 parameters" in out


def test_layer_table_rows_add_up_to_the_model() -> None:
    model = create_model("lenet", in_channels=1, num_classes=10)
    rows = layer_table(model, (1, 28, 28), max_depth=1)
    assert sum(row.parameters for row in rows) == count_parameters(model)
    assert rows[-1].output_shape == (1, 10)


def test_unknown_model_is_one_line_with_the_valid_names(capsys: pytest.CaptureFixture) -> None:
    assert main(["show", "resnet19"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "resnet18" in err and "wrn28_10" in err


def test_a_bad_input_shape_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--input", "32x32"])
    assert exit_info.value.code == 2


def test_counting_leaves_the_model_in_training_mode() -> None:
    model = create_model("lenet", in_channels=1, num_classes=10)
    count_flops(model, (1, 28, 28))
    assert model.training
