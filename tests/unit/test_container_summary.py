"""`hvinfra status`'s table reads the engine's container list alone: the exit code and the health
come from the list's status line, which the engine writes as `docker ps` prints it."""

from __future__ import annotations

import pytest

from hvinfra.engine import container_summary


def _row(state: str, status: str) -> dict[str, object]:
    return {
        "Id": "d50216e96cd5" + "0" * 52,
        "Names": ["/hunyuanvideo"],
        "Image": "hunyuanvideo/hunyuanvideo:cuda_12",
        "ImageID": "sha256:" + "2" * 64,
        "State": state,
        "Status": status,
        "Labels": {"io.hvinfra.profile": "t2v", "io.hvinfra.gpus": "0,1"},
    }


@pytest.mark.parametrize(
    ("state", "status", "exit_code", "health"),
    [
        ("running", "Up 3 minutes", 0, ""),
        ("running", "Up 3 minutes (healthy)", 0, "healthy"),
        ("running", "Up 2 seconds (health: starting)", 0, "starting"),
        ("running", "Up About an hour (unhealthy)", 0, "unhealthy"),
        ("exited", "Exited (137) 5 seconds ago", 137, ""),
        ("exited", "Exited (0) 2 days ago", 0, ""),
        ("created", "Created", 0, ""),
        ("restarting", "Restarting (1) 3 seconds ago", 0, ""),
    ],
)
def test_exit_code_and_health_come_from_the_status_line(
    state: str, status: str, exit_code: int, health: str
) -> None:
    summary = container_summary(_row(state, status))
    assert summary.status == state
    assert (summary.exit_code, summary.health) == (exit_code, health)
    assert summary.name == "hunyuanvideo" and summary.labels["io.hvinfra.gpus"] == "0,1"


def test_a_row_without_names_or_labels_still_reads() -> None:
    summary = container_summary({"Id": "abc", "State": "dead", "Status": ""})
    assert (summary.name, summary.status, summary.labels) == ("", "dead", {})
