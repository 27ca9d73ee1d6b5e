"""`parse_benchmark_model_output` on damaged and foreign text: the recorded outputs of
`tests/fixtures/benchmark_model/` cut at every line and at random bytes, interleaved, with NUL
and random bytes, absurd numbers and other tools' logs mixed in. The parser gives a result
(with a finite mean) or a `ValueError` with a message, never another exception. Seeded
`random.Random`, a few thousand cases, a few seconds."""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tfdistill.bench import BenchmarkResult, parse_benchmark_model_output

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"
TEXTS = {path.name: path.read_text() for path in sorted(FIXTURES.glob("*.txt"))}

PYTEST_LOG = """\
============================= test session starts ==============================
platform linux -- Python 3.12.3, pytest-8.3.4, pluggy-1.5.0
rootdir: /work/wt-faults
collected 106 items

tests/test_bench.py ....F.....                                           [ 10%]
=================================== FAILURES ===================================
E       assert count=50 first=1 curr=2 min=1 max=3 avg=nan std=0
E       ValueError: no benchmark timings found
FAILED tests/test_bench.py::test_parse_fixture[arm] - ValueError: boom
========================= 1 failed, 105 passed in 70.34s =========================
"""
DMESG = """\
[    0.000000] Linux version 6.8.0-51-generic (buildd@lcy02-amd64-027) (gcc 13.2.0)
[    0.000000] Command line: BOOT_IMAGE=/vmlinuz root=UUID=0f1e ro quiet splash
[    2.345678] usb 1-1: new high-speed USB device number 2 using xhci_hcd
[   12.000001] usb 1-1: USB disconnect, device number 2
[   13.500000] Out of memory: Killed process 4242 (benchmark_model) total-vm:1048576kB
[   14.000000] audit: type=1400 audit(1700000000.123:45): apparmor="DENIED" count=3
"""
ABSURD = ["1e400", "-1e400", "9" * 400, "nan", "-inf", "", "-", "0", "-0", "1e-400", "٣", "0x10"]
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def check(text: str, case: str) -> str:
    """'result' or 'error'; any other exception fails the test, naming the case."""
    try:
        result = parse_benchmark_model_output(text)
    except ValueError as error:
        assert str(error).strip(), case
        return "error"
    except Exception as error:
        raise AssertionError(f"{case}: {type(error).__name__}: {error}") from error
    assert isinstance(result, BenchmarkResult), case
    assert result.avg_us is not None and math.isfinite(result.avg_us), case
    result.table()
    return "result"


def line_cuts() -> Iterator[tuple[str, str]]:
    for name, text in TEXTS.items():
        lines = text.splitlines(keepends=True)
        for end in range(len(lines) + 1):
            yield f"{name} first {end} lines", "".join(lines[:end])
            yield f"{name} from line {end}", "".join(lines[end:])


def byte_cuts(rng: random.Random) -> Iterator[tuple[str, str]]:
    for name, text in TEXTS.items():
        raw = text.encode()
        for _ in range(40):
            start, end = sorted(rng.randrange(len(raw) + 1) for _ in range(2))
            errors = rng.choice(["replace", "surrogateescape", "ignore"])
            yield f"{name} bytes {start}:{end} ({errors})", raw[start:end].decode("utf-8", errors)


def interleaved(rng: random.Random) -> Iterator[tuple[str, str]]:
    names = list(TEXTS) + ["pytest", "dmesg"]
    others = {**TEXTS, "pytest": PYTEST_LOG, "dmesg": DMESG}
    for _ in range(150):
        a, b = rng.sample(names, 2)
        left, right = others[a].splitlines(), others[b].splitlines()
        merged = []
        while left or right:
            source = left if left and (not right or rng.random() < 0.5) else right
            merged.append(source.pop(0))
        yield f"{a} interleaved with {b}", "\n".join(merged)


def _insert(rng: random.Random, text: str, pieces: Callable[[], str], count: int) -> str:
    for _ in range(count):
        at = rng.randrange(len(text) + 1)
        text = text[:at] + pieces() + text[at:]
    return text


def noisy(rng: random.Random) -> Iterator[tuple[str, str]]:
    def random_bytes() -> str:
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        return raw.decode("latin-1" if rng.random() < 0.5 else "utf-8", "surrogateescape")

    for name, text in TEXTS.items():
        for _ in range(25):
            yield f"{name} with NULs", _insert(rng, text, lambda: "\0", rng.randrange(1, 20))
            yield f"{name} with bytes", _insert(rng, text, random_bytes, rng.randrange(1, 20))
            lines = text.splitlines()
            for _ in range(rng.randrange(1, 6)):
                i = rng.randrange(len(lines) + 1)
                lines[i:i] = rng.choice([PYTEST_LOG, DMESG]).splitlines()[: rng.randrange(1, 9)]
            yield f"{name} among other logs", "\n".join(lines)


def absurd_numbers(rng: random.Random) -> Iterator[tuple[str, str]]:
    for name, text in TEXTS.items():
        for _ in range(30):
            matches = list(NUMBER.finditer(text))
            chosen = {m.start() for m in rng.sample(matches, min(len(matches), 8))}
            yield (
                f"{name} with absurd numbers",
                NUMBER.sub(
                    lambda m, c=chosen: rng.choice(ABSURD) if m.start() in c else m.group(), text
                ),
            )


@pytest.mark.parametrize(
    "cases",
    [
        lambda rng: line_cuts(),
        byte_cuts,
        interleaved,
        noisy,
        absurd_numbers,
        lambda rng: ((f"{n} alone", t) for n, t in (("pytest", PYTEST_LOG), ("dmesg", DMESG))),
    ],
    ids=["line cuts", "byte cuts", "interleaved", "noise", "absurd numbers", "other logs"],
)
def test_damaged_output_gives_a_result_or_a_value_error(cases):
    outcomes = [check(text, case) for case, text in cases(random.Random(24))]
    assert len(outcomes) >= 2


def test_whole_fixtures_still_parse_and_cut_ones_do_not_all():
    assert {check(text, name) for name, text in TEXTS.items()} == {"result"}
    assert "error" in {check(text, case) for case, text in line_cuts()}


def test_a_long_number_in_a_profiler_row_parses_at_once():
    """Found by the fuzzing: an op-profiling row with its last cell blank and a 400-digit
    number before it took the fallback regular expression for rows 9 s (every way to split
    the digits between two parts of a number)."""
    text = TEXTS["official_readme_legacy_tail.txt"]
    row = next(line for line in text.splitlines() if "CONV_2D" in line and "%" in line)
    cells = row.split("\t")
    cells[-2:] = ["9" * 400, ""]
    began = time.perf_counter()
    check(text.replace(row, "\t".join(cells)), "a 400-digit cell")
    assert time.perf_counter() - began < 1.0


@pytest.mark.parametrize(
    "line",
    [
        "The input model file size (MB): 1e400",
        "Memory footprint delta from the start of the tool (MB): init=1e400 overall=1e400",
        "Inference (avg): 1e306 ms",
    ],
)
def test_an_infinite_number_is_no_number(line):
    """Found by the fuzzing: a model size beyond float range was an OverflowError."""
    text = TEXTS["arm_gcp_axion_percentiles.txt"] + line + "\n"
    assert check(text, line) == "result"
