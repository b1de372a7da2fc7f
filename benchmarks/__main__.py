"""`python -m benchmarks`: hvinfra against the docker CLI and bare docker-py, on one private engine.

Each row times two commands, A (hvinfra) and B (the baseline), one process per run, interleaved
A B B A (so drift hits both sides alike), after warm-ups. It prints min / median / max per side
and the ratio of the medians, checks it against the row's goal, and writes a JSON result.
Rows that miss their goal also time a floor, F (benchmarks/floor.py): the baseline plus the
libraries hvinfra is built on for that command and its fixed waits, so the result says how much
of the gap is the stack and how much is hvinfra's own code.
`--quick` runs every row once with small inputs: it checks that the harness works (CI), not speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.engine.dockerd import (  # noqa: E402
    PrivateDockerd,
    build_standin_image,
    docker_cli,
)
from tests.engine.registry import LocalRegistry, find_registry_binary  # noqa: E402

ROWS = ("help", "status", "up", "logs", "pull")
# What the floors import: the libraries hvinfra is built on for each command.
STATUS_STACK = ("typer",)
UP_STACK = ("typer", "yaml", "hvinfra.profiles.models")
PULL_STACK = ("typer", "rich.progress", "yaml", "hvinfra.profiles.models")  # pull reads a profile
UP_SETTLE = 0.25  # `hvinfra up --settle`'s default


@dataclass(frozen=True)
class Step:
    """One command of a timed run; `timed=False` steps (clean-up) run between the timed ones."""

    argv: Sequence[str]
    timed: bool = True


@dataclass
class Row:
    name: str
    a_label: str
    b_label: str
    goal: str
    # ratio of medians: "A/B" for times (lower is better) or "B/A" for throughput (higher better)
    throughput: bool = False
    limit: float = 0.0
    f_label: str = ""
    a_times: list[float] = field(default_factory=list)
    b_times: list[float] = field(default_factory=list)
    f_times: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        a, b = statistics.median(self.a_times), statistics.median(self.b_times)
        return b / a if self.throughput else a / b

    @property
    def floor_ratio(self) -> float | None:
        """The floor's ratio to the baseline: the best the stack allows (time rows only)."""
        if not self.f_times:
            return None
        return statistics.median(self.f_times) / statistics.median(self.b_times)

    @property
    def meets_goal(self) -> bool:
        return self.ratio >= self.limit if self.throughput else self.ratio <= self.limit

    def as_json(self) -> dict[str, Any]:
        def stats(times: list[float]) -> dict[str, float]:
            return {
                "min_s": min(times),
                "median_s": statistics.median(times),
                "max_s": max(times),
                "runs": len(times),
            }

        result: dict[str, Any] = {
            "row": self.name,
            "a": {"command": self.a_label, **stats(self.a_times)},
            "b": {"command": self.b_label, **stats(self.b_times)},
            "ratio": round(self.ratio, 3),
            "ratio_kind": "throughput B/A" if self.throughput else "time A/B",
            "goal": self.goal,
            "meets_goal": self.meets_goal,
        }
        if self.floor_ratio is not None:
            result["floor"] = {"command": self.f_label, **stats(self.f_times)}
            result["floor_ratio"] = round(self.floor_ratio, 3)
        return result


def _run(steps: Sequence[Step], env: dict[str, str]) -> float:
    elapsed = 0.0
    for step in steps:
        start = time.perf_counter()
        done = subprocess.run(
            list(step.argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
        )
        if step.timed:
            elapsed += time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(
                f"benchmark step failed ({done.returncode}): {' '.join(step.argv)}\n"
                + done.stderr.decode(errors="replace")[-2000:]
            )
    return elapsed


def measure(
    row: Row,
    a: Callable[[], Sequence[Step]],
    b: Callable[[], Sequence[Step]],
    env: dict[str, str],
    *,
    rounds: int,
    warmups: int,
    floor: Callable[[], Sequence[Step]] | None = None,
) -> Row:
    sides = [(a, row.a_times), (b, row.b_times)]
    if floor is not None:
        sides.append((floor, row.f_times))
    for _ in range(warmups):
        for side, _times in sides:
            _run(side(), env)
    for index in range(rounds):
        order = sides if index % 2 == 0 else sides[::-1]  # A B F, F B A, A B F ...
        for side, times in order:
            times.append(_run(side(), env))
    return row


@dataclass
class Bench:
    engine: PrivateDockerd
    standin: str
    work: Path
    env: dict[str, str]
    quick: bool
    pull_layer_mib: int = 48
    hvinfra: str = field(default_factory=lambda: str(Path(sys.executable).parent / "hvinfra"))
    docker: str = field(default_factory=docker_cli)

    def runnable(self, name: str) -> list[str]:
        return [
            "--set", f"image={self.standin}",
            "--set", f"container_name={name}",
            "--set", "ulimits.memlock=8m",
            "--set", f"volumes.code.host={self.work}/code",
            "--set", f"volumes.weights.host={self.work}/ckpts",
            "--set", f"volumes.outputs.host={self.work}/outputs",
        ]  # fmt: skip

    def python(self, script: str, *args: str) -> list[str]:
        return [sys.executable, str(REPO / "benchmarks" / script), *args]

    def floor(
        self, modules: Sequence[str], script: str, *args: str, settle: float = 0.0
    ) -> list[str]:
        imports = [item for module in modules for item in ("--import", module)]
        return self.python("floor.py", *imports, "--settle", str(settle), script, *args)


def _env(engine: PrivateDockerd, home: Path) -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE goes too: with it, every run would compile hvinfra's modules from
    # source (an editable install has no bytecode until a run writes it), while docker-py, typer
    # and pydantic load theirs from site-packages, where pip compiled them. An installed hvinfra
    # has its bytecode like they do; the warm-ups write it here.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DOCKER_", "HVINFRA_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    for sub in ("docker-config", "config", "cache", "data", "state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env.update(
        DOCKER_HOST=engine.host,
        DOCKER_CONFIG=str(home / "docker-config"),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_STATE_HOME=str(home / "state"),
        HVINFRA_SKIP_CHECKS="1",
        NO_COLOR="1",
        TERM="dumb",
        COLUMNS="200",
    )
    return env


def row_help(bench: Bench, rounds: int, warmups: int) -> Row:
    row = Row("help", "hvinfra --help", "docker --help", "<= 6x", limit=6.0)
    return measure(
        row,
        lambda: [Step([bench.hvinfra, "--help"])],
        lambda: [Step([bench.docker, "--help"])],
        bench.env,
        rounds=rounds,
        warmups=warmups,
    )


def row_status(bench: Bench, rounds: int, warmups: int) -> Row:
    for index in range(3):
        name = f"bench-status-{index}-{uuid.uuid4().hex[:6]}"
        _run([Step([bench.hvinfra, "up", "t2v", *bench.runnable(name)])], bench.env)
    row = Row("status", "hvinfra status", "bare docker-py listing", "<= 1.3x", limit=1.3,
              f_label="the listing after importing typer")  # fmt: skip
    return measure(
        row,
        lambda: [Step([bench.hvinfra, "status"])],
        lambda: [Step(bench.python("bare_status.py"))],
        bench.env,
        rounds=rounds,
        warmups=warmups,
        floor=lambda: [Step(bench.floor(STATUS_STACK, "bare_status.py"))],
    )


def _create_kwargs_file(bench: Bench, name: str) -> Path:
    """The create kwargs hvinfra's own spec gives for the `up` row, as JSON for bare_up.py."""
    from hvinfra.engine import to_create_kwargs
    from hvinfra.profiles.load import load_profile
    from hvinfra.spec import build_run_spec

    sets = bench.runnable(name)[1::2]
    environ = {k: v for k, v in bench.env.items() if not k.startswith("HVINFRA_")}
    loaded = load_profile("t2v", env=environ, sets=sets)
    kwargs = to_create_kwargs(build_run_spec(loaded.profile))
    path = bench.work / "bare-up-kwargs.json"
    path.write_text(json.dumps(kwargs), encoding="utf-8")
    return path


def row_up(bench: Bench, rounds: int, warmups: int) -> Row:
    name = f"bench-up-{uuid.uuid4().hex[:6]}"
    kwargs_file = _create_kwargs_file(bench, name)
    remove = Step([bench.docker, "rm", "-f", name])
    row = Row("up", "hvinfra up t2v + docker rm -f", "docker-py run + docker rm -f", "<= 1.3x",
              limit=1.3, f_label="the run after importing typer, the pydantic profile schema"
              f" and PyYAML, then {UP_SETTLE} s settle + docker rm -f")  # fmt: skip
    floor = bench.floor(UP_STACK, "bare_up.py", str(kwargs_file), settle=UP_SETTLE)
    return measure(
        row,
        lambda: [Step([bench.hvinfra, "up", "t2v", *bench.runnable(name)]), remove],
        lambda: [Step(bench.python("bare_up.py", str(kwargs_file))), remove],
        bench.env,
        rounds=rounds,
        warmups=warmups,
        floor=lambda: [Step(floor), remove],
    )


def row_logs(bench: Bench, rounds: int, warmups: int) -> Row:
    import docker

    lines = 2_000 if bench.quick else 200_000
    name = f"bench-logs-{uuid.uuid4().hex[:6]}"
    client = docker.DockerClient(base_url=bench.engine.host)
    container = client.containers.run(
        bench.standin,
        ["seq", "1", str(lines)],
        name=name,
        detach=True,
        labels={"io.hvinfra.managed": "true", "io.hvinfra.profile": "t2v"},
    )
    container.wait()
    row = Row("logs", f"hvinfra logs ({lines} lines)", "docker logs", ">= 0.8x throughput",
              throughput=True, limit=0.8)  # fmt: skip
    return measure(
        row,
        lambda: [Step([bench.hvinfra, "logs", "t2v", "--name", name])],
        lambda: [Step([bench.docker, "logs", name])],
        bench.env,
        rounds=rounds,
        warmups=warmups,
    )


@contextmanager
def _registry_image(bench: Bench) -> Iterator[str]:
    """A three-layer image of random data pushed to a local registry; yields its reference."""
    import docker

    layer_mib = 2 if bench.quick else bench.pull_layer_mib
    context = bench.work / "pull-image"
    context.mkdir()
    for index in range(3):
        (context / f"blob{index}").write_bytes(os.urandom(layer_mib << 20))
    (context / "Dockerfile").write_text(
        f"FROM {bench.standin}\nCOPY blob0 /blob0\nCOPY blob1 /blob1\nCOPY blob2 /blob2\n"
    )
    with LocalRegistry() as registry:
        registry.start()
        ref = f"{registry.address}/bench/pull:{uuid.uuid4().hex[:6]}"
        client = docker.DockerClient(base_url=bench.engine.host)
        client.images.build(path=str(context), tag=ref, rm=True)
        for _ in client.api.push(ref, stream=True, decode=True):
            pass
        client.images.remove(ref, force=True)
        yield ref


def row_pull(bench: Bench, rounds: int, warmups: int) -> Row:
    with _registry_image(bench) as ref:
        remove = Step([bench.docker, "rmi", "-f", ref], timed=False)
        row = Row("pull", f"hvinfra pull (progress; 3 x {bench.pull_layer_mib} MiB layers)",
                  "docker pull", "<= 1.05x", limit=1.05,
                  f_label="a bare docker-py pull after importing typer, rich, PyYAML and the"
                  " pydantic profile schema")  # fmt: skip
        return measure(
            row,
            lambda: [Step([bench.hvinfra, "pull", "t2v", "--image", ref]), remove],
            lambda: [Step([bench.docker, "pull", ref]), remove],
            bench.env,
            rounds=rounds,
            warmups=warmups,
            floor=lambda: [Step(bench.floor(PULL_STACK, "bare_pull.py", ref)), remove],
        )


RUNNERS: dict[str, Callable[[Bench, int, int], Row]] = {
    "help": row_help,
    "status": row_status,
    "up": row_up,
    "logs": row_logs,
    "pull": row_pull,
}


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def _print(rows: list[Row], quick: bool) -> None:
    print(f"{'row':8} {'A median':>10} {'B median':>10} {'ratio':>7}  goal")
    for row in rows:
        a, b = statistics.median(row.a_times), statistics.median(row.b_times)
        verdict = "" if quick else ("ok" if row.meets_goal else "MISSED")
        print(f"{row.name:8} {a * 1000:8.0f}ms {b * 1000:8.0f}ms {row.ratio:6.2f}x  "
              f"{row.goal} {verdict}")  # fmt: skip
        print(f"{'':8} A: {row.a_label}; min {min(row.a_times) * 1000:.0f} max "
              f"{max(row.a_times) * 1000:.0f} ms | B: {row.b_label}; min "
              f"{min(row.b_times) * 1000:.0f} max {max(row.b_times) * 1000:.0f} ms")  # fmt: skip
        if row.floor_ratio is not None:
            f = statistics.median(row.f_times)
            print(f"{'':8} F: {row.f_label}: {f * 1000:.0f} ms, {row.floor_ratio:.2f}x the"
                  f" baseline; hvinfra above it {(a - f) * 1000:+.0f} ms")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one small run per row (CI)")
    parser.add_argument("--only", action="append", choices=ROWS, help="run only these rows")
    parser.add_argument("--rounds", type=int, default=10, help="timed runs per side")
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument("--json", type=Path, default=REPO / "benchmark-results.json")
    parser.add_argument(
        "--pull-layer-mib", type=int, default=48,
        help="the pull row's image: three layers of this many MiB of random data",
    )  # fmt: skip
    args = parser.parse_args(argv)
    rounds, warmups = (1, 0) if args.quick else (args.rounds, args.warmups)
    names = args.only or list(ROWS)
    if "pull" in names and find_registry_binary() is None:
        print("pull row skipped: docker-registry is not installed", file=sys.stderr)
        names.remove("pull")
    with ExitStack() as stack:
        engine = stack.enter_context(PrivateDockerd.in_tempdir(gpu_hook=True, prefix="hvb-"))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hvbench-")))
        assert engine.host is not None, "the private engine did not start"
        bench = Bench(
            engine=engine,
            standin=build_standin_image(engine.host),
            work=work,
            env=_env(engine, work / "home"),
            quick=args.quick,
            pull_layer_mib=args.pull_layer_mib,
        )
        rows = [RUNNERS[name](bench, rounds, warmups) for name in names]
    _print(rows, args.quick)
    result = {
        "machine": _machine(),
        "quick": args.quick,
        "pull_layer_mib": args.pull_layer_mib,
        "rows": [r.as_json() for r in rows],
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
