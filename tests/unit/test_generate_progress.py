"""Reading the sample script's output: tqdm steps, the saved path, failure hints."""

from __future__ import annotations

from hvinfra.generate.progress import LineSplitter, failure_hint, parse_step, saved_path


def test_tqdm_step_line_is_parsed() -> None:
    step = parse_step("  4%|▍         | 2/50 [00:41<16:24, 20.51s/it]")
    assert step is not None
    assert (step.n, step.total, step.elapsed, step.remaining) == (2, 50, "00:41", "16:24")
    assert step.rate == "20.51s/it"


def test_last_update_of_several_in_one_line_wins() -> None:
    step = parse_step("  2%|| 1/50 [00:01<00:49]\r  4%|| 2/50 [00:02<00:48]")
    assert step is not None and step.n == 2


def test_lines_without_a_bar_are_not_steps() -> None:
    assert parse_step("Namespace(prompt='a 50% chance|x')") is None


def test_carriage_returns_split_lines_and_utf8_survives_chunk_boundaries() -> None:
    splitter = LineSplitter()
    data = "猫 1/2\r2/2\nrest".encode()
    lines = [line for i in range(len(data)) for line in splitter.feed(data[i : i + 1])]
    assert lines == ["猫 1/2", "2/2"]
    assert list(splitter.flush()) == ["rest"]


def test_saved_path_is_read_from_the_loguru_line() -> None:
    line = "2025-01-01 10:00:00.123 | INFO | __main__:main:60 - Sample save to: /o/j/x y.mp4"
    assert saved_path(line) == "/o/j/x y.mp4"
    assert saved_path("nothing here") is None


def test_out_of_memory_gets_a_hint() -> None:
    hint = failure_hint("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate")
    assert hint is not None and "--cpu-offload" in hint
    assert failure_hint("all fine") is None
