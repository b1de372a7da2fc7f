"""GpuSelection: one value for `all`, `none` and listed GPUs, from every spelling users write."""

from __future__ import annotations

import pytest

from hvinfra.gpu_selection import GpuSelection


@pytest.mark.parametrize(
    ("given", "label", "value"),
    [
        ("all", "all", "all"),
        (None, "all", "all"),
        ("none", "none", "none"),
        ("0,1", "0,1", ("0", "1")),
        (" 2 , 3 ", "2,3", ("2", "3")),
        (["GPU-a", "GPU-b"], "GPU-a,GPU-b", ("GPU-a", "GPU-b")),
        ((0, 1), "0,1", ("0", "1")),
    ],
)
def test_every_spelling_reads_the_same(given: object, label: str, value: object) -> None:
    selection = GpuSelection.of(given)  # type: ignore[arg-type]
    assert selection.label == label and selection.value == value
    assert GpuSelection.of(selection) is selection


def test_first_is_the_first_listed_gpu_or_the_default() -> None:
    assert GpuSelection.of("3,4").first() == "3"
    assert GpuSelection.of("all").first() == "0"
    assert GpuSelection.of("none").first("x") == "x"
