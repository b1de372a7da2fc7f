"""Digest pinning, the lock file, the free-disk check, registry faults and references."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from hvinfra.build_display import BuildDisplay
from hvinfra.cli import main
from hvinfra.engine import classify
from hvinfra.errors import ExitCode, ImageError, ProfileError
from hvinfra.images import (
    LockEntry,
    disk_check,
    find_lock,
    lock_entry,
    lock_mismatch,
    pinned_ref,
    read_lock,
    repo_digest_of,
    repository,
    write_lock,
)
from hvinfra.output import Output
from hvinfra.profiles import load_profile
from hvinfra.records import ImageInfo
from hvinfra.registry import parse_reference, plain_http
from hvinfra.spec import build_run_spec

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
GB = 1000**3


# -- registry faults ---------------------------------------------------------------------------
FAULTS = [
    ('Head "http://127.0.0.1:5056/v2/hv/multi/manifests/1": no basic auth credentials',
     "authentication required", "docker login 127.0.0.1:5056"),
    ("unauthorized: authentication required", "authentication required", "docker login"),
    ("manifest for 127.0.0.1:5055/hv/multi:nope not found: manifest unknown: manifest unknown",
     "no such image or tag", "--image REPO:TAG"),
    ("toomanyrequests: You have reached your pull rate limit.", "rate limit", "mirror"),
    ("failed to register layer: Error processing tar file(exit status 1): write /x: no space "
     "left on device", "ran out of disk space", "data-root"),
    ('Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
     "cannot be reached", "network"),
    ('Get "http://127.0.0.1:52397/v2/hv/multi/blobs/sha256:76c9": EOF',
     "broke during the pull", "rerun"),
    ('Get "http://127.0.0.1:58627/v2/hv/multi/blobs/sha256:cc79": http: server closed idle '
     "connection", "broke during the pull", "rerun"),  # seen in CI when the registry stopped
    ('Get "https://10.0.0.5:5000/v2/": http: server gave HTTP response to HTTPS client',
     "plain HTTP", "insecure-registries"),
    ('Get "https://r.example/v2/": x509: certificate signed by unknown authority',
     "TLS certificate", "/etc/docker/certs.d/127.0.0.1:5056/ca.crt"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "meaning", "fix_part"), FAULTS)
def test_registry_faults_name_the_cause_and_the_fix(text: str, meaning: str, fix_part: str) -> None:
    error = classify(text, "pulling x", registry="127.0.0.1:5056")
    assert isinstance(error, ImageError) and error.exit_code == ExitCode.IMAGE
    assert meaning in error.message
    assert fix_part in error.fix


def test_a_registry_fault_without_a_known_registry_still_reads_well() -> None:
    error = classify("no basic auth credentials")
    assert error is not None and "docker login REGISTRY" in error.fix


# -- references and pinning --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("image", "digest", "expected"),
    [
        ("hunyuanvideo/hunyuanvideo:cuda_12", None, "hunyuanvideo/hunyuanvideo:cuda_12"),
        ("hunyuanvideo/hunyuanvideo:cuda_12", D1, f"hunyuanvideo/hunyuanvideo@{D1}"),
        (f"127.0.0.1:5000/hv/x@{D1}", None, f"127.0.0.1:5000/hv/x@{D1}"),
        ("127.0.0.1:5000/hv/x", D1, f"127.0.0.1:5000/hv/x@{D1}"),
    ],
)
def test_a_digest_pins_the_reference(image: str, digest: str | None, expected: str) -> None:
    assert pinned_ref(image, digest) == expected


def test_profile_image_digest_is_what_gets_run() -> None:
    profile = load_profile("t2v", sets=[f"image_digest={D1}"]).profile
    assert build_run_spec(profile).image == f"hunyuanvideo/hunyuanvideo@{D1}"


@pytest.mark.parametrize(
    "sets",
    [["image_digest=sha256:abc"], [f"image=repo@{D1}", f"image_digest={D2}"], ["image=repo@x"]],
)
def test_bad_or_conflicting_digests_are_profile_errors(sets: list[str]) -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile("t2v", sets=sets)
    assert caught.value.exit_code == ExitCode.PROFILE


def test_repo_digest_is_matched_by_repository_docker_hub_names_included() -> None:
    info = ImageInfo(id="sha256:i", repo_digests=(f"other/x@{D2}", f"busybox@{D1}"))
    assert repo_digest_of(info, "docker.io/library/busybox:1.36") == f"busybox@{D1}"
    assert repo_digest_of(info, "alpine") == ""
    assert repository("127.0.0.1:5000/a/b:1") == "127.0.0.1:5000/a/b"


def test_references_parse_like_the_docker_cli() -> None:
    assert parse_reference("busybox").repository == "library/busybox"
    hub = parse_reference("hunyuanvideo/hunyuanvideo:cuda_12")
    assert (hub.api_host, hub.repository, hub.reference) == (
        "registry-1.docker.io",
        "hunyuanvideo/hunyuanvideo",
        "cuda_12",
    )
    local = parse_reference(f"127.0.0.1:5000/hv/x@{D1}")
    assert (local.registry, local.reference) == ("127.0.0.1:5000", D1)
    assert plain_http("127.0.0.1:5000", ()) and plain_http("localhost:5000", ())
    assert plain_http("10.1.2.3:5000", ("10.0.0.0/8",))
    assert not plain_http("ghcr.io", ("127.0.0.0/8",))


# -- lock file ---------------------------------------------------------------------------------
def test_lock_file_round_trips_and_is_documented_json(tmp_path: Path) -> None:
    path = tmp_path / "hvinfra.lock"
    info = ImageInfo(id="sha256:abc", repo_digests=(f"hv/t2v@{D1}",), size=123)
    entry = lock_entry("hv/t2v:1", info, now=dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc))
    write_lock(path, {"t2v": entry})
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert data["images"]["t2v"] == {
        "image": "hv/t2v:1",
        "repo_digest": f"hv/t2v@{D1}",
        "id": "sha256:abc",
        "size": 123,
        "locked_at": "2026-11-28T00:00:00Z",
    }
    assert read_lock(path) == {"t2v": entry}


def test_a_broken_lock_file_is_a_profile_error_with_a_fix(tmp_path: Path) -> None:
    path = tmp_path / "hvinfra.lock"
    path.write_text("{not json")
    with pytest.raises(ProfileError) as caught:
        read_lock(path)
    assert "hvinfra lock all" in caught.value.fix


def test_lock_is_found_by_option_then_env_then_cwd(tmp_path: Path) -> None:
    assert find_lock(None, env={}, cwd=tmp_path) is None
    (tmp_path / "hvinfra.lock").write_text("{}")
    assert find_lock(None, env={}, cwd=tmp_path) == tmp_path / "hvinfra.lock"
    assert find_lock(None, env={"HVINFRA_LOCK": "/x.lock"}, cwd=tmp_path) == Path("/x.lock")
    assert find_lock(Path("/y.lock"), env={"HVINFRA_LOCK": "/x"}, cwd=tmp_path) == Path("/y.lock")


def test_lock_mismatch_compares_registry_digests_then_image_ids() -> None:
    entry = LockEntry(image="hv/t2v:1", repo_digest=f"hv/t2v@{D1}", id="sha256:aaa")
    same = ImageInfo(id="sha256:zzz", repo_digests=(f"hv/t2v@{D1}",))
    newer = ImageInfo(id="sha256:bbb", repo_digests=(f"hv/t2v@{D2}",))
    assert lock_mismatch(entry, "hv/t2v:1", same) is None
    assert "the lock has sha256:111111111111" in str(lock_mismatch(entry, "hv/t2v:1", newer))
    assert "not present locally" in str(lock_mismatch(entry, "hv/t2v:1", None))
    assert "the lock names hv/t2v:1" in str(lock_mismatch(entry, "other/img:1", same))
    built = LockEntry(image="hv/t2v:1", repo_digest="", id="sha256:aaa")
    assert lock_mismatch(built, "hv/t2v:1", ImageInfo(id="sha256:aaa")) is None
    assert "image sha256:bbb" in str(lock_mismatch(built, "hv/t2v:1", ImageInfo(id="sha256:bbb")))


# -- free disk ---------------------------------------------------------------------------------
def test_disk_check_fails_when_compressed_plus_known_unpacked_does_not_fit() -> None:
    check = disk_check("/var/lib/docker", free=50 * GB, compressed=20 * GB, unpacked=40 * GB)
    assert check.status == "fail"
    assert check.message == (
        "Docker's data root /var/lib/docker has 50.0 GB free; the image needs 20.0 GB"
        " compressed + 40.0 GB unpacked"
    )


def test_disk_check_warns_when_only_the_unpacked_estimate_is_short() -> None:
    assert disk_check("/d", free=50 * GB, compressed=20 * GB, unpacked=None).status == "warn"
    assert disk_check("/d", free=80 * GB, compressed=20 * GB, unpacked=None).status == "ok"
    assert disk_check("/d", free=10 * GB, compressed=20 * GB, unpacked=None).status == "fail"


def test_disk_check_is_skipped_without_a_local_data_root_or_a_size() -> None:
    assert disk_check("/d", free=None, compressed=1, unpacked=None).status == "skip"
    assert disk_check("/d", free=1, compressed=None, unpacked=None).status == "skip"


# -- build output and CLI usage ----------------------------------------------------------------
def test_build_display_numbers_steps_and_keeps_the_image_id() -> None:
    output = Output()
    lines: list[str] = []
    output.err.print = lambda text, **_: lines.append(text)  # type: ignore[method-assign]
    display = BuildDisplay(output)
    display(
        iter(
            [
                {"stream": "Step 1/2 : FROM busybox\n"},
                {"stream": " ---> Running in 9f\nhello from RUN\n ---> 1a2b\n"},
                {"stream": "Step 2/2 : LABEL [x]=y\nRemoving intermediate container 9f\n"},
                {"aux": {"ID": "sha256:feed"}},
            ]
        )
    )
    assert lines == ["[1/2] FROM busybox", "  hello from RUN", "[2/2] LABEL [x]=y"]
    assert display.image_id == "sha256:feed"


def test_pull_all_with_one_image_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pull", "all", "--image", "x:1"]) == ExitCode.USAGE
    assert "name one profile" in capsys.readouterr().err


def test_build_of_an_unknown_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "t3v"]) == ExitCode.USAGE
    assert "use t2v or i2v" in capsys.readouterr().err
