"""`folder:` against hostile files: empty, truncated, not images, too large, a PNG bomb, odd
modes (CMYK, 16-bit, palette with transparency, alpha), symlink loops. Each is skipped and
counted by reason, or converted to the pixels Pillow's own conversion gives."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfdistill.data import decode, load_folder

RNG = np.random.default_rng(0)
SIZE = (40, 50)


def _rgb(h: int = SIZE[0], w: int = SIZE[1]) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), np.uint8)


def _truncated(path: Path, image: Image.Image, fmt: str) -> None:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def _png_bomb(path: Path, side: int = 30_000) -> None:
    """A valid 8-bit grayscale PNG declaring side × side pixels, all zero (~0.9 MB at 30,000)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    compressor = zlib.compressobj(9)
    row = b"\0" * (side + 1)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _plain_folder(root: Path, per_class: int = 3) -> None:
    """root/train/{cat,dog} and root/test/{cat,dog}, plain RGB PNGs of `SIZE`."""
    for split, count in (("train", per_class), ("test", 1)):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(_rgb()).save(folder / f"plain{i}.png")


def _stored(ds, root: Path, file: Path) -> np.ndarray:
    """The uint8 image `file` (under root/train) became in `ds`'s training store."""
    files = sorted(p for p in (root / "train").rglob("*") if p.is_file())
    kept = [p for p in files if p.name.startswith(("plain", "x_mode_"))]
    return ds.x_train.uint8([kept.index(file)])[0]


def test_empty_truncated_unreadable_and_large_files_are_skipped_and_counted(tmp_path):
    root = tmp_path / "photos"
    _plain_folder(root)
    cat = root / "train" / "cat"
    (cat / "empty.png").write_bytes(b"")
    (cat / "text.jpg").write_text("not an image")
    _truncated(cat / "cut.jpg", Image.fromarray(_rgb(200, 200)), "JPEG")
    _truncated(cat / "cut.png", Image.fromarray(_rgb(200, 200)), "PNG")
    Image.fromarray(_rgb(300, 300)).save(cat / "large.png")
    Image.fromarray(_rgb(300, 300)).save(root / "train" / "dog" / "large_but_drafted.jpg")
    ds = load_folder(root, image_size=16, cache_dir=tmp_path / "cache", max_megapixels=0.05)
    assert ds.skipped_reasons == {"empty": 1, "not_an_image": 1, "truncated": 2, "too_large": 1}
    assert ds.skipped == 5
    assert (len(ds.x_train), len(ds.x_test)) == (7, 2)  # the JPEG decodes at 1/8 a side
    again = load_folder(root, image_size=16, cache_dir=tmp_path / "cache", max_megapixels=0.05)
    assert again.skipped_reasons == ds.skipped_reasons  # read back from the cache
    looser = load_folder(root, image_size=16, cache_dir=tmp_path / "cache", max_megapixels=1)
    assert looser.skipped_reasons == {"empty": 1, "not_an_image": 1, "truncated": 2}


def _mode_files(cat: Path) -> dict[str, tuple[Path, Image.Image]]:
    """The odd-mode images, saved in `cat`, by name: (file, the image as saved)."""
    palette = Image.fromarray(_rgb()).convert("P")
    made = {
        "cmyk": ("x_mode_cmyk.jpg", Image.fromarray(_rgb()).convert("CMYK")),
        "gray16": ("x_mode_gray16.png", Image.fromarray(RNG.integers(0, 65536, SIZE, np.uint16))),
        "palette": ("x_mode_palette.png", palette),
        "rgba": ("x_mode_rgba.png", Image.fromarray(RNG.integers(0, 256, (*SIZE, 4), np.uint8))),
        "la": ("x_mode_la.png", Image.fromarray(RNG.integers(0, 256, (*SIZE, 2), np.uint8), "LA")),
    }
    files = {}
    for name, (file, image) in made.items():
        extra = {"transparency": 3} if name == "palette" else {}
        image.save(cat / file, **extra)
        files[name] = (cat / file, image)
    return files


@pytest.mark.parametrize("channels", [3, 1])
def test_odd_modes_are_converted_as_pillow_converts(tmp_path, channels):
    root = tmp_path / "photos"
    _plain_folder(root)
    if channels == 1:
        first = root / "train" / "cat" / "plain0.png"
        Image.open(first).convert("L").save(first)
    files = _mode_files(root / "train" / "cat")
    ds = load_folder(root, cache_dir=tmp_path / "cache")
    assert ds.skipped == 0 and ds.image_size is None and ds.input_shape == (*SIZE, channels)
    target = "RGB" if channels == 3 else "L"
    for name, (file, _) in files.items():
        with Image.open(file) as opened:
            if name == "gray16":
                high = (np.asarray(opened, np.int64) >> 8).astype(np.uint8)
                expected = np.asarray(Image.fromarray(high, "L").convert(target))
            elif name == "cmyk":
                expected = np.asarray(opened.convert("RGB").convert(target))
            else:
                expected = np.asarray(opened.convert(target))
        got = _stored(ds, root, file)
        np.testing.assert_array_equal(got, expected.reshape(got.shape), err_msg=name)
    with Image.open(files["palette"][0]) as palette:
        assert palette.mode == "P" and "transparency" in palette.info


def test_symlink_loops_end_and_a_folder_linked_twice_counts_once(tmp_path):
    root = tmp_path / "photos"
    _plain_folder(root)
    cat = root / "train" / "cat"
    (cat / "a").mkdir()
    Image.fromarray(_rgb()).save(cat / "a" / "plain_in_a.png")
    os.symlink("..", cat / "a" / "loop")
    shared = tmp_path / "shared"
    shared.mkdir()
    Image.fromarray(_rgb()).save(shared / "plain_shared.png")
    os.symlink(shared, cat / "first_link")
    os.symlink(shared, cat / "second_link")
    os.symlink(cat / "plain0.png", cat / "plain_again.png")
    ds = load_folder(root, cache_dir=tmp_path / "cache")
    assert ds.skipped == 0
    assert len(ds.x_train) == 3 + 1 + 1 + 3  # cat: 3 own, a/, shared once; dog: 3
    rows = ds.x_train.uint8(slice(None))
    for once in (shared / "plain_shared.png", cat / "plain0.png"):
        pixels = np.asarray(Image.open(once))
        assert sum(np.array_equal(row, pixels) for row in rows) == 1, once.name


def test_large_images_shrink_in_eight_bits_before_the_float_resize(tmp_path):
    Image.fromarray(_rgb(2000, 1600)).save(tmp_path / "big.png")
    Image.fromarray(_rgb(2000, 1600)).save(tmp_path / "big.jpg")
    limit = decode.DEFAULT_MAX_MEGAPIXELS * 1e6
    png = decode.read(tmp_path / "big.png", 3, (64, 64), limit)
    jpeg = decode.read(tmp_path / "big.jpg", 3, (64, 64), limit)
    assert png.shape == (167, 134, 3)  # reduced by 12: at least twice its 80x64 cover
    assert jpeg.shape == (250, 200, 3)  # drafted at 1/8 a side
    assert decode.read(tmp_path / "big.png", 3, None, limit).shape == (2000, 1600, 3)
    assert decode.read(tmp_path / "big.png", 3, (64, 64), 1e6) == decode.TOO_LARGE
    assert decode.read(tmp_path / "big.jpg", 3, (64, 64), 1e6).shape == (250, 200, 3)


CHILD = """
import json, resource, sys
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from tfdistill.data import load_folder
megapixels = float(sys.argv[4])
ds = load_folder(sys.argv[1], image_size=32, cache_dir=sys.argv[2], max_megapixels=megapixels)
# VmHWM, not ru_maxrss: Linux carries the parent's (pytest's) RSS into ru_maxrss across exec.
status = open("/proc/self/status").read().split("VmHWM:")[1]
peak = int(status.split()[0]) * 1024
print(json.dumps({"reasons": ds.skipped_reasons, "train": len(ds.x_train), "peak": peak}))
"""
MEMORY_LIMIT = 3 * 2**30


@pytest.mark.parametrize(
    "side, max_megapixels",
    [
        (13_000, 50),
        pytest.param(30_000, 2000, marks=pytest.mark.slow),  # Pillow's own limit, as before
    ],
    ids=["169MP-over-our-limit", "900MP-over-pillows-limit"],
)
def test_a_png_bomb_is_skipped_as_too_large_under_a_memory_limit(tmp_path, side, max_megapixels):
    root = tmp_path / "photos"
    _plain_folder(root)
    _png_bomb(root / "train" / "dog" / "bomb.png", side)
    _truncated(root / "train" / "cat" / "cut.jpg", Image.fromarray(_rgb(200, 200)), "JPEG")
    assert (root / "train" / "dog" / "bomb.png").stat().st_size < 2**20
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    arguments = [str(root), str(tmp_path / "cache"), str(MEMORY_LIMIT), str(max_megapixels)]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    result = json.loads(child.stdout.splitlines()[-1])
    assert result["reasons"] == {"truncated": 1, "too_large": 1}
    assert result["train"] == 6
    assert result["peak"] < 2**30
    chatter = [line for line in child.stderr.splitlines() if "JPEG" in line or "PNG" in line]
    assert not chatter, chatter
