"""Writes docs/models.md's last section: each family's parameters and multiply-adds beside its
paper's figures. The hand-written text above the MARKER line is kept as it is.

    python tools/models_table.py [--out docs/models.md]

Builds every row's model (a few minutes on 2 cores: ResNeXt-101 has 44M parameters).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import tfdistill
from tfdistill import models
from tfdistill.artifacts import write_atomic

IMAGENET, CIFAR = (224, 224, 3), (32, 32, 3)
MARKER = "<!-- tools/models_table.py writes from here to the end of the file -->\n"

# family, builder arguments, input, classes, paper params (M), paper MACs (M), source
ROWS = [
    ("mobilenet_v1", {"alpha": 1.0}, IMAGENET, 1000, 4.2, 569, "Howard et al. 2017, Table 8"),
    ("mobilenet_v1", {"alpha": 0.75}, IMAGENET, 1000, 2.6, 325, "Table 6"),
    ("mobilenet_v1", {"alpha": 0.5}, IMAGENET, 1000, 1.3, 149, "Table 6"),
    ("mobilenet_v1", {"alpha": 0.25}, IMAGENET, 1000, 0.5, 41, "Table 6"),
    ("mobilenet_v1", {"alpha": 1.0}, (192, 192, 3), 1000, 4.2, 418, "Table 7"),
    ("mobilenet_v1", {"alpha": 1.0}, (160, 160, 3), 1000, 4.2, 290, "Table 7"),
    ("mobilenet_v1", {"alpha": 1.0}, (128, 128, 3), 1000, 4.2, 186, "Table 7"),
    ("mobilenet_v2", {"alpha": 1.0}, IMAGENET, 1000, 3.4, 300, "Sandler et al. 2018, Table 4"),
    ("mobilenet_v2", {"alpha": 1.4}, IMAGENET, 1000, 6.9, 585, "Table 4 ¹"),
    ("shufflenet_v1", {"groups": 1}, IMAGENET, 1000, None, 143, "Zhang et al. 2018, Table 2"),
    ("shufflenet_v1", {"groups": 2}, IMAGENET, 1000, None, 140, "Table 2"),
    ("shufflenet_v1", {"groups": 3}, IMAGENET, 1000, None, 137, "Table 2"),
    ("shufflenet_v1", {"groups": 4}, IMAGENET, 1000, None, 133, "Table 2"),
    ("shufflenet_v1", {"groups": 8}, IMAGENET, 1000, None, 137, "Table 2"),
    ("shufflenet_v1", {"groups": 3, "scale": 0.5}, IMAGENET, 1000, None, 38, "Table 2"),
    ("shufflenet_v1", {"groups": 3, "scale": 0.25}, IMAGENET, 1000, None, 13, "Table 2"),
    ("shufflenet_v2", {"scale": 0.5}, IMAGENET, 1000, 1.4, 41, "Ma et al. 2018, Table 5"),
    ("shufflenet_v2", {"scale": 1.0}, IMAGENET, 1000, 2.3, 146, "Table 5"),
    ("shufflenet_v2", {"scale": 1.5}, IMAGENET, 1000, 3.5, 299, "Table 5"),
    ("shufflenet_v2", {"scale": 2.0}, IMAGENET, 1000, 7.4, 591, "Table 5"),
    ("resnet", {"depth": 20}, CIFAR, 10, 0.27, None, "He et al. 2016, Table 6"),
    ("resnet", {"depth": 32}, CIFAR, 10, 0.46, None, "Table 6"),
    ("resnet", {"depth": 44}, CIFAR, 10, 0.66, None, "Table 6"),
    ("resnet", {"depth": 56}, CIFAR, 10, 0.85, None, "Table 6"),
    ("resnet", {"depth": 110}, CIFAR, 10, 1.7, None, "Table 6"),
    ("resnet", {"depth": 18}, IMAGENET, 1000, 11.7, 1800, "Table 1 (params: torchvision)"),
    ("resnet", {"depth": 34}, IMAGENET, 1000, 21.8, 3600, "Table 1"),
    ("resnet", {"depth": 50}, IMAGENET, 1000, 25.6, 3800, "Table 1 ²"),
    ("resnet", {"depth": 50, "stride_in_1x1": True}, IMAGENET, 1000, 25.6, 3800, "Table 1 ²"),
    ("wide_resnet", {"depth": 16, "width": 1}, CIFAR, 10, 0.175, None, "Zagoruyko & Komodakis"),
    ("wide_resnet", {"depth": 16, "width": 2}, CIFAR, 10, 0.69, None, "AT paper, Table 1"),
    ("wide_resnet", {"depth": 40, "width": 4}, CIFAR, 10, 8.9, None, "WRN paper, Table 4"),
    ("wide_resnet", {"depth": 16, "width": 8}, CIFAR, 10, 11.0, None, "WRN paper, Table 4"),
    ("wide_resnet", {"depth": 28, "width": 10}, CIFAR, 10, 36.5, None, "WRN paper, Table 4"),
    (
        "resnext",
        {"depth": 29, "cardinality": 8, "bottleneck_width": 64},
        CIFAR,
        10,
        34.4,
        None,
        "Xie et al. 2017, Table 7",
    ),
    (
        "resnext",
        {"depth": 29, "cardinality": 16, "bottleneck_width": 64},
        CIFAR,
        10,
        68.1,
        None,
        "Table 7",
    ),
    (
        "resnext",
        {"depth": 50, "cardinality": 32, "bottleneck_width": 4},
        IMAGENET,
        1000,
        25.0,
        4200,
        "Table 1",
    ),
    (
        "resnext",
        {"depth": 101, "cardinality": 32, "bottleneck_width": 4},
        IMAGENET,
        1000,
        44.2,
        8000,
        "Table 5",
    ),
    (
        "squeezenet",
        {"version": "1.0"},
        IMAGENET,
        1000,
        1.248424,
        820,
        "Iandola et al. 2016 (torchvision) ³",
    ),
    ("squeezenet", {"version": "1.1"}, IMAGENET, 1000, 1.235496, 350, "reference v1.1 ³"),
]


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def table() -> str:
    lines = [
        "| family | arguments | input | params (M) | paper | MACs (M) | paper | source |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for family, kwargs, shape, classes, paper_params, paper_macs, source in ROWS:
        cost = tfdistill.profile(
            models.get(family, input_shape=shape, num_classes=classes, **kwargs)
        )
        args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        lines.append(
            f"| {family} | {args} | {shape[0]}×{shape[1]} | {cost.params / 1e6:,.3f} | "
            f"{_fmt(paper_params, 3 if paper_params and paper_params < 1 else 1)} | "
            f"{cost.macs / 1e6:,.1f} | {_fmt(paper_macs, 0)} | {source} |"
        )
        print(lines[-1], file=sys.stderr)
    return "\n".join(lines)


def with_kept_text(out: Path, generated: str) -> str:
    """`generated` after the text `out` holds up to and including MARKER (all of `generated`
    when `out` has no marker)."""
    old = out.read_text(encoding="utf-8") if out.exists() else ""
    head, marker, _ = old.partition(MARKER)
    return head + marker + generated if marker else generated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(Path(__file__).parent.parent / "docs" / "models.md"))
    out = Path(parser.parse_args().out)
    text = (
        "## The model zoo against its papers\n\n"
        f"Made by `python tools/models_table.py` on {datetime.date.today()}. Parameters count\n"
        "every weight (BatchNorm statistics included, as `model.count_params()`); MACs are the\n"
        "multiply-adds of convolutions and fully connected layers for one image\n"
        "(`tfdistill.profile`), the papers' convention. A dash: the paper gives no figure.\n\n"
        f"{table()}\n\n"
        "¹ The paper's 6.9M for MobileNetV2 1.4 disagrees with the authors' own reference model:\n"
        "ours has exactly the parameters of `keras.applications.MobileNetV2(alpha=1.4)`\n"
        "(6,156,712), as every MobileNetV2 row here equals keras.applications (tested).\n\n"
        "² The ResNet paper's 3.8G multiply-adds for ResNet-50 come from the original model,\n"
        "whose bottlenecks stride in the first 1×1 convolution (`stride_in_1x1=True`: 3.86G).\n"
        "The default strides in the 3×3 convolution (as torchvision; 4.09G, the figure the\n"
        "ResNeXt paper uses).\n\n"
        "³ SqueezeNet's parameters are the reference definitions' (torchvision's num_params,\n"
        "equal to ours to the weight: 1,248,424 and 1,235,496). The paper reports parameters and\n"
        "model size, so the MACs beside ours are torchvision's 0.82 and 0.35 GFLOPS, which\n"
        "count multiply-adds (its ResNet-18: 1.81). The reference repository says v1.1 needs\n"
        "2.4× less computation than v1.0; ours: 819M / 349M = 2.35×. Neither has BatchNorm\n"
        "(`batch_norm=True` adds it and drops the biases).\n"
    )
    text = with_kept_text(out, text)
    write_atomic(out, lambda f: f.write(text))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
