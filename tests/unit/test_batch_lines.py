"""Batch files: the three formats, every line validated like `generate`, errors with file:line
and the nearest valid values, the request hash that resume matches on."""

from __future__ import annotations

from pathlib import Path

import pytest

from hvinfra.batch.lines import (
    BatchFileError,
    parse_text,
    read_batch,
    request_hash,
    require_valid,
)
from hvinfra.generate.request import I2VRequest, T2VRequest


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def test_jsonl_lines_take_generate_options_by_long_name(tmp_path: Path) -> None:
    path = write(tmp_path, "p.jsonl", '{"prompt": "a cat", "seed": 7, "resolution": "540p",'
                 ' "aspect": "9:16", "frames": 33, "steps": 5, "neg-prompt": "blur",'
                 ' "flow_shift": 5}\n\n{"prompt": "a dog"}\n')  # fmt: skip
    lines = read_batch(path, "t2v", {})
    assert [line.number for line in lines] == [1, 3]
    first = lines[0].request
    assert isinstance(first, T2VRequest)
    assert (first.seed, first.video_size, first.frames, first.steps) == (7, (960, 544), 33, 5)
    assert first.neg_prompt == "blur" and first.flow_shift == 5


def test_plain_text_is_one_prompt_per_line_and_skips_comments(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "# evaluation set\na red fox\n\n  a blue bird  \n")
    lines = read_batch(path, "t2v", {"resolution": "540p"})
    assert [(line.number, line.request.prompt) for line in lines if line.request] == [
        (2, "a red fox"), (4, "a blue bird"),
    ]  # fmt: skip
    assert all(line.request and line.request.resolution == "540p" for line in lines)


def test_csv_header_names_the_options_and_empty_cells_take_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", 'prompt,seed,frames\n"a cat, walking",1,33\na dog,,\n')
    lines = read_batch(path, "t2v", {"frames": 65})
    assert [line.request.prompt for line in lines if line.request] == ["a cat, walking", "a dog"]
    assert [line.request.frames for line in lines if line.request] == [33, 65]
    assert lines[0].request and lines[0].request.seed == 1


def test_line_values_win_over_command_line_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "p.jsonl", '{"prompt": "x", "steps": 10}\n{"prompt": "y"}\n')
    lines = read_batch(path, "t2v", {"steps": 5})
    assert [line.request.steps for line in lines if line.request] == [10, 5]


def test_errors_name_file_and_line_and_the_nearest_valid_values(tmp_path: Path) -> None:
    path = write(tmp_path, "p.jsonl", '{"prompt": "ok"}\n{"prompt": "x", "frames": 30}\n'
                 '{"prompt": "x", "frame": 33}\n{"prompt": "x",\n'
                 '{"prompt": "x", "resolution": "4k"}\n')  # fmt: skip
    with pytest.raises(BatchFileError) as caught:
        require_valid(path, read_batch(path, "t2v", {}), skip_invalid=False)
    message = caught.value.message
    assert "4 of 5 lines are invalid; nothing was started" in message
    assert f"{path}:2: --frames: 30 frames cannot be generated" in message
    assert "nearest valid: 29" in message
    assert f"{path}:3: unknown field 'frame'; did you mean 'frames'?" in message
    assert f"{path}:4: not valid JSON" in message
    assert f"{path}:5: --resolution: '4k' is not a text-to-video resolution" in message
    assert "--skip-invalid" in caught.value.fix


def test_skip_invalid_keeps_the_valid_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "p.jsonl", '{"prompt": "ok"}\n{"prompt": ""}\n')
    valid = require_valid(path, read_batch(path, "t2v", {}), skip_invalid=True)
    assert [line.number for line in valid] == [1]


def test_a_line_without_seed_gets_the_same_derived_seed_on_every_read(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "a cat\na cat\n")
    first, second = read_batch(path, "t2v", {}), read_batch(path, "t2v", {})
    assert first[0].seed_derived
    assert first[0].request and second[0].request
    assert first[0].request.seed == second[0].request.seed
    assert first[1].request and first[0].request.seed != first[1].request.seed  # per line


def test_request_hash_changes_when_the_line_is_edited(tmp_path: Path) -> None:
    a = parse_text('{"prompt": "a cat", "seed": 1}\n', tmp_path / "a.jsonl", "t2v", {})[0]
    same = parse_text('{"seed": 1, "prompt": "a cat"}\n', tmp_path / "a.jsonl", "t2v", {})[0]
    edited = parse_text('{"prompt": "a cat", "seed": 2}\n', tmp_path / "a.jsonl", "t2v", {})[0]
    assert request_hash(a) == request_hash(same) != request_hash(edited)


def test_i2v_lines_resolve_images_beside_the_file_and_hash_their_content(tmp_path: Path) -> None:
    (tmp_path / "cat.png").write_bytes(b"png-1")
    path = write(tmp_path, "p.jsonl", '{"prompt": "x", "image": "cat.png", "dynamic": true}\n'
                 '{"prompt": "y", "image": "missing.png"}\n')  # fmt: skip
    lines = read_batch(path, "i2v", {})
    request = lines[0].request
    assert isinstance(request, I2VRequest)
    assert request.image == str(tmp_path / "cat.png") and request.mode == "dynamic"
    assert "missing.png: no such file" in lines[1].error
    before = request_hash(lines[0])
    (tmp_path / "cat.png").write_bytes(b"png-2")
    assert request_hash(read_batch(path, "i2v", {})[0]) != before


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BatchFileError, match="no lines to run"):
        read_batch(write(tmp_path, "p.txt", "# only a comment\n\n"), "t2v", {})


def test_files_that_render_accepts_are_batch_files_too(tmp_path: Path) -> None:
    """`hvinfra render` tasks call `hvinfra batch --shard` on the same file: bare prompts between
    JSON lines and the `mode` key read the same here."""
    (tmp_path / "a.png").write_bytes(b"png")
    path = write(tmp_path, "p.jsonl", '{"prompt": "x", "image": "a.png", "mode": "dynamic"}\n'
                 "a bare prompt\n")  # fmt: skip
    lines = read_batch(path, "i2v", {"image": str(tmp_path / "a.png")})
    assert [line.error for line in lines] == ["", ""]
    assert lines[0].request and lines[0].request.mode == "dynamic"  # type: ignore[union-attr]
    assert lines[1].request and lines[1].request.prompt == "a bare prompt"
