"""The run's PNG plots: accuracy against latency with the Pareto front, file sizes, training
curves, the latency-budget search, attention maps and a phone's slowest ops. Matplotlib draws
off-screen (Agg); each file is written atomically."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from tfdistill.artifacts import write_atomic


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (latency, accuracy) points no other point beats: none is at least as
    fast and at least as accurate while strictly better in one. Sorted by latency."""
    front = []
    for i, (latency, accuracy) in enumerate(points):
        dominated = any(
            (lat <= latency and acc >= accuracy) and (lat < latency or acc > accuracy)
            for j, (lat, acc) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def _figure() -> tuple:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.5), dpi=100)


def _save(figure, path: str | os.PathLike) -> Path:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return write_atomic(path, lambda f: f.write(buffer.getvalue()), mode="wb")


def accuracy_latency(rows: list[dict], path: str | os.PathLike) -> Path:
    """Test accuracy (%) against LiteRT latency (µs, log scale) of every `.tflite` row of the
    report, the Pareto front joined by a line."""
    figure, axes = _figure()
    points = [(row["latency_us"], 100.0 * row["accuracy"]) for row in rows]
    for row, (latency, accuracy) in zip(rows, points, strict=True):
        axes.scatter(latency, accuracy, s=30)
        axes.annotate(
            Path(row["file"]).stem,
            (latency, accuracy),
            fontsize=7,
            xytext=(4, 2),
            textcoords="offset points",
        )
    front = pareto_front(points)
    axes.plot(
        [points[i][0] for i in front],
        [points[i][1] for i in front],
        "k--",
        lw=1,
        label="Pareto front",
    )
    axes.set_xscale("log")
    axes.set_xlabel("latency per image, µs (LiteRT, log scale)")
    axes.set_ylabel("test accuracy, %")
    axes.legend(loc="lower right")
    return _save(figure, path)


def sizes(rows: list[dict], path: str | os.PathLike) -> Path:
    """Raw and gzipped size (KB, log scale) of every `.tflite` file."""
    figure, axes = _figure()
    names = [Path(row["file"]).stem for row in rows]
    positions = range(len(rows))
    axes.barh(
        [p + 0.2 for p in positions], [r["size_bytes"] / 1024 for r in rows], 0.4, label="raw"
    )
    axes.barh(
        [p - 0.2 for p in positions],
        [r.get("gzip_bytes", 0) / 1024 for r in rows],
        0.4,
        label="gzip",
    )
    axes.set_yticks(list(positions), names, fontsize=7)
    axes.set_xscale("log")
    axes.set_xlabel("size, KB (log scale)")
    axes.legend()
    return _save(figure, path)


def training_curves(histories: dict[str, dict[str, list[float]]], path: str | os.PathLike) -> Path:
    """Training loss per epoch of each model (name -> Keras `History.history`)."""
    figure, axes = _figure()
    for name, history in histories.items():
        losses = history.get("loss", [])
        axes.plot(range(1, len(losses) + 1), losses, marker="o", ms=3, label=name)
    axes.set_xlabel("epoch")
    axes.set_ylabel("training loss")
    axes.set_yscale("log")
    axes.legend()
    return _save(figure, path)


__all__ = ["accuracy_latency", "pareto_front", "sizes", "training_curves"]


def search_path(search: dict, path: str | os.PathLike) -> Path:
    """The `--latency_budget` search: every round's fine-tuned proposals (grey) and the one kept
    (the line), holdout agreement against latency (µs), from the start to the budget
    (dashed)."""
    figure, axes = _figure()
    tried = [p for r in search["rounds"] for p in r["proposals"] if p["accuracy"] is not None]
    axes.scatter([p["latency_us"] for p in tried], [p["accuracy"] for p in tried], s=8, c="0.7")
    chosen = [r["chosen"] for r in search["rounds"]]
    axes.plot(
        [c["latency_us"] for c in chosen],
        [c["accuracy"] for c in chosen],
        marker="o",
        label="kept each round",
    )
    axes.axvline(search["start_us"], linestyle=":", color="0.5", label="distilled student")
    for i, c in enumerate(chosen, 1):
        axes.annotate(
            f"{i}: {c['group']} −{c['removed']}", (c["latency_us"], c["accuracy"]), fontsize=6
        )
    axes.axvline(search["budget_us"], linestyle="--", color="k", label="budget")
    axes.set_xlabel("float32 latency, µs")
    axes.set_ylabel("holdout agreement with the teacher")
    axes.invert_xaxis()
    axes.legend(fontsize=7)
    return _save(figure, path)


def attention_maps(pictures: dict, path: str | os.PathLike) -> Path:
    """A grid: one row per test image, the image, then for each tapped stage the teacher's and
    each student's attention maps side by side. `pictures`: "images" (B, H, W, C) in [0, 1],
    "stages" (names, one per tapped pair) and "maps" {model name: [(B, H_l, W_l) per stage]}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, stages, maps = pictures["images"], pictures["stages"], pictures["maps"]
    columns = [(stage, name) for stage in range(len(stages)) for name in maps]
    rows = len(images)
    figure, axes = plt.subplots(
        rows, 1 + len(columns), figsize=(1.3 * (1 + len(columns)), 1.4 * rows), squeeze=False
    )
    for row in range(rows):
        image = images[row]
        axes[row][0].imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
        for col, (stage, name) in enumerate(columns, 1):
            axes[row][col].imshow(maps[name][stage][row], cmap="inferno")
            if row == 0:
                axes[row][col].set_title(f"{name}\n{stages[stage]}", fontsize=6)
    axes[0][0].set_title("test image", fontsize=6)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    return _save(figure, path)


def op_profile(ops: list[dict], path: str | os.PathLike, top: int = 15) -> Path:
    """The `top` slowest ops of a profiled run (`OpProfileRow` dicts of the "Run Order" table:
    `node_type`, `name`, `avg_ms`), as horizontal bars in µs, slowest at the top."""
    figure, axes = _figure()
    slowest = sorted(ops, key=lambda op: op["avg_ms"], reverse=True)[:top][::-1]
    labels = [f"{op['node_type']} {op.get('name') or ''}".strip()[:48] for op in slowest]
    axes.barh(range(len(slowest)), [1000 * op["avg_ms"] for op in slowest], color="C1")
    axes.set_yticks(range(len(slowest)), labels, fontsize=6)
    axes.set_xlabel("average time per run, µs")
    return _save(figure, path)
