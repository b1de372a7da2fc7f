"""The launcher's plan-then-execute logic over a hand-written fake engine."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from gpu_fakes import summary_of

from hvinfra.errors import ContainerExited, ContainerStateError, EngineRefused, ImageError
from hvinfra.launcher import PullPolicy, down, ensure_image, exit_explanation, up
from hvinfra.records import ContainerInfo, ContainerSummary, ImageInfo
from hvinfra.spec import LABEL_MANAGED, Mount, RunSpec, with_identity


class FakeEngine:
    """Keeps containers and images in dicts; `start_status` decides what a start leads to."""

    host = "fake://"

    def __init__(self, images: set[str] | None = None, start_status: str = "running") -> None:
        self.images = set(images or ())
        self.start_status = start_status
        self.start_error: Exception | None = None
        self.by_id: dict[str, ContainerInfo] = {}
        self.calls: list[str] = []
        self.pullable = True

    def image(self, ref: str) -> ImageInfo | None:
        return ImageInfo(id="sha256:" + ref) if ref in self.images else None

    def pull_events(self, ref: str) -> Iterator[dict[str, Any]]:
        self.calls.append(f"pull {ref}")
        if not self.pullable:
            raise ImageError("registry says no", "")
        yield {"status": "Pulling", "id": "layer1"}
        self.images.add(ref)

    def container(self, name_or_id: str) -> ContainerInfo | None:
        for info in self.by_id.values():
            if name_or_id in (info.id, info.name):
                return info
        return None

    def containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        return [c for c in self.by_id.values() if labels.items() <= c.labels.items()]

    def container_summaries(self, labels: Mapping[str, str]) -> list[ContainerSummary]:
        return [summary_of(c) for c in self.containers(labels)]

    def create(self, spec: RunSpec) -> str:
        container_id = f"id{len(self.calls):04d}" + "0" * 60
        self.calls.append(f"create {spec.name}")
        self.by_id[container_id] = ContainerInfo(
            id=container_id, name=spec.name, image=spec.image, image_id="sha256:" + spec.image,
            status="created", labels=spec.label_map, tty=spec.tty, stdin_open=spec.stdin_open,
        )  # fmt: skip
        return container_id

    def start(self, container_id: str, name: str = "") -> None:
        self.calls.append(f"start {container_id[:6]}")
        if self.start_error:
            raise self.start_error
        info = self.by_id[container_id]
        self.by_id[container_id] = replace(info, status=self.start_status, exit_code=136)

    def stop(self, container_id: str, timeout: int = 10) -> None:
        self.calls.append(f"stop {container_id[:6]}")
        info = self.by_id[container_id]
        self.by_id[container_id] = replace(info, status="exited", exit_code=0)

    def remove(self, container_id: str, force: bool = True) -> None:
        self.calls.append(f"remove {container_id[:6]}")
        self.by_id.pop(container_id, None)

    def log_tail(self, container_id: str, lines: int = 50) -> str:
        return "loading model\nFloating point exception (core dumped)\n"


def _spec(tmp_path: Path, name: str = "hv", **changes: Any) -> RunSpec:
    spec = RunSpec(
        image="img:1",
        name=name,
        mounts=(Mount(str(tmp_path / "weights"), "/ckpts", True),),
        labels=((LABEL_MANAGED, "true"), ("io.hvinfra.profile", "t2v")),
        tty=True,
        stdin_open=True,
    )
    return with_identity(replace(spec, **changes))


def test_up_pulls_a_missing_image_then_creates_and_starts(tmp_path: Path) -> None:
    engine = FakeEngine()
    result = up(engine, _spec(tmp_path), profile_name="t2v", settle=0)
    assert result.action == "created" and result.pulled
    assert result.container.running
    assert [c.split()[0] for c in engine.calls] == ["pull", "create", "start"]
    assert (tmp_path / "weights").is_dir()  # bind sources are made by us, not by dockerd


def test_up_makes_the_mount_point_of_a_nested_mount_in_the_outer_source(tmp_path: Path) -> None:
    mounts = (Mount(str(tmp_path / "code"), "/work"), Mount(str(tmp_path / "w"), "/work/ckpts"))
    up(FakeEngine(), _spec(tmp_path, mounts=mounts), profile_name="t2v", settle=0)
    assert (tmp_path / "code" / "ckpts").is_dir()  # made by us, not by dockerd as root
    assert not any((tmp_path / "code" / "ckpts").iterdir())


def test_up_never_pulls_with_pull_never(tmp_path: Path) -> None:
    engine = FakeEngine()
    with pytest.raises(ImageError, match="--pull never"):
        up(engine, _spec(tmp_path), profile_name="t2v", pull=PullPolicy.NEVER, settle=0)
    assert engine.calls == []


def test_pull_always_pulls_a_present_image() -> None:
    engine = FakeEngine(images={"img:1"})
    assert ensure_image(engine, "img:1", PullPolicy.ALWAYS) is True
    assert ensure_image(engine, "img:1", PullPolicy.MISSING) is False


def test_up_keeps_a_running_container_of_the_same_spec(tmp_path: Path) -> None:
    engine = FakeEngine(images={"img:1"})
    first = up(engine, _spec(tmp_path), profile_name="t2v", settle=0)
    second = up(engine, _spec(tmp_path), profile_name="t2v", settle=0)
    assert second.action == "kept"
    assert second.container.id == first.container.id
    assert len(engine.by_id) == 1


def test_up_starts_a_stopped_container_of_the_same_spec(tmp_path: Path) -> None:
    engine = FakeEngine(images={"img:1"})
    first = up(engine, _spec(tmp_path), profile_name="t2v", settle=0)
    engine.stop(first.container.id)
    again = up(engine, _spec(tmp_path), profile_name="t2v", settle=0)
    assert again.action == "started" and again.container.id == first.container.id
    assert again.container.running


def test_up_recreates_a_container_whose_spec_changed(tmp_path: Path) -> None:
    engine = FakeEngine(images={"img:1"})
    first = up(engine, _spec(tmp_path), profile_name="t2v", settle=0)
    again = up(engine, _spec(tmp_path, environment=(("FOO", "bar"),)), profile_name="t2v", settle=0)
    assert again.action == "recreated"
    assert again.plan is not None and again.plan.differences == ("env FOO added",)
    assert list(engine.by_id) == [again.container.id] != [first.container.id]


def test_up_no_recreate_keeps_the_differing_container(tmp_path: Path) -> None:
    engine = FakeEngine(images={"img:1"})
    first = up(engine, _spec(tmp_path), profile_name="t2v", settle=0)
    changed = _spec(tmp_path, environment=(("FOO", "bar"),))
    again = up(engine, changed, profile_name="t2v", no_recreate=True, settle=0)
    assert again.action == "kept" and again.container.id == first.container.id
    assert again.plan is not None and again.plan.differs


def test_up_force_recreate_recreates(tmp_path: Path) -> None:
    engine = FakeEngine(images={"img:1"})
    first = up(engine, _spec(tmp_path), profile_name="t2v", settle=0)
    again = up(engine, _spec(tmp_path), profile_name="t2v", force_recreate=True, settle=0)
    assert again.action == "recreated"
    assert again.container.id != first.container.id
    assert list(engine.by_id) == [again.container.id]


def test_up_refuses_a_foreign_container_of_that_name(tmp_path: Path) -> None:
    engine = FakeEngine(images={"img:1"})
    engine.by_id["x" * 64] = ContainerInfo(
        id="x" * 64, name="hv", image="other", image_id="", status="running"
    )
    with pytest.raises(ContainerStateError) as caught:
        up(engine, _spec(tmp_path), profile_name="t2v", settle=0)
    assert "did not create" in caught.value.message
    assert "docker rm -f hv" in caught.value.fix
    assert engine.calls == []


def test_down_refuses_a_foreign_container(tmp_path: Path) -> None:
    engine = FakeEngine(images={"img:1"})
    engine.by_id["x" * 64] = ContainerInfo(
        id="x" * 64, name="hv", image="other", image_id="", status="running"
    )
    with pytest.raises(ContainerStateError) as caught:
        down(engine, "hv")
    assert caught.value.exit_code == 6
    assert "docker rm -f hv" in caught.value.fix
    assert engine.calls == [] and len(engine.by_id) == 1


def test_a_failed_start_leaves_nothing_behind(tmp_path: Path) -> None:
    engine = FakeEngine(images={"img:1"})
    engine.start_error = EngineRefused("memlock", "fix")
    with pytest.raises(EngineRefused):
        up(engine, _spec(tmp_path), profile_name="t2v", settle=0)
    assert engine.by_id == {}
    assert engine.calls[-1].startswith("remove")


def test_an_early_exit_shows_code_signal_hint_and_log_tail(tmp_path: Path) -> None:
    engine = FakeEngine(images={"img:1"}, start_status="exited")
    with pytest.raises(ContainerExited) as caught:
        up(engine, _spec(tmp_path), profile_name="t2v", settle=0)
    message = caught.value.message
    assert "exit code 136" in message and "SIGFPE" in message and "CUBLAS" in message
    assert "Floating point exception" in message
    assert caught.value.status == 136
    assert len(engine.by_id) == 1  # kept, so `hvinfra logs` can show the whole log


def test_down_stops_and_removes_and_is_idempotent(tmp_path: Path) -> None:
    engine = FakeEngine(images={"img:1"})
    up(engine, _spec(tmp_path), profile_name="t2v", settle=0)
    result = down(engine, "hv")
    assert result.found and result.removed and engine.by_id == {}
    assert down(engine, "hv").found is False


def test_down_keep_only_stops(tmp_path: Path) -> None:
    engine = FakeEngine(images={"img:1"})
    started = up(engine, _spec(tmp_path), profile_name="t2v", settle=0)
    result = down(engine, "hv", keep=True)
    assert not result.removed
    assert engine.by_id[started.container.id].status == "exited"


def test_exit_explanation_names_signals() -> None:
    assert exit_explanation(137).startswith("exit code 137, SIGKILL")
    assert exit_explanation(3) == "exit code 3"


class _Clock:
    """What the launcher uses of `time`, on a virtual clock: no test waits for real."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class _ExitsAfter(FakeEngine):
    """A container that runs, then exits once `after` seconds of the clock have passed."""

    def __init__(self, clock: _Clock, after: float) -> None:
        super().__init__(images={"img:1"})
        self.clock, self.after, self.started_at = clock, after, 0.0

    def start(self, container_id: str, name: str = "") -> None:
        super().start(container_id, name)
        self.started_at = self.clock.now

    def container(self, name_or_id: str) -> ContainerInfo | None:
        info = super().container(name_or_id)
        if info is not None and self.clock.now - self.started_at >= self.after:
            return replace(info, status="exited", exit_code=1)
        return info


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    import hvinfra.launcher

    fake = _Clock()
    monkeypatch.setattr(hvinfra.launcher, "time", fake)  # the launcher's `time`, no one else's
    return fake


def test_an_exit_inside_the_settle_window_fails_up(tmp_path: Path, clock: _Clock) -> None:
    engine = _ExitsAfter(clock, after=0.2)
    with pytest.raises(ContainerExited):
        up(engine, _spec(tmp_path), profile_name="t2v", settle=0.25)


def test_up_waits_out_the_settle_window_and_no_longer(tmp_path: Path, clock: _Clock) -> None:
    engine = _ExitsAfter(clock, after=10.0)
    result = up(engine, _spec(tmp_path), profile_name="t2v", settle=0.25)
    assert result.container.running
    assert sum(clock.slept) == pytest.approx(0.25)  # polls every 0.05 s, the last one shortened
