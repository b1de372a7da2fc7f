"""The pool's side of job control: a batch runs one job per GPU in one container, so its own
jobs (same host, same hvinfra process) do not block each other; another hvinfra's still do."""

from __future__ import annotations

import os
import socket

import pytest
from test_untrusted_inputs import _Listing as Listing  # the container's LIST_JOBS output

from hvinfra.errors import ContainerStateError
from hvinfra.generate.job_control import refuse_or_kill_stale


class Notes:
    def note(self, text: str) -> None:
        pass


def test_this_hvinfra_s_own_running_jobs_do_not_block_the_next() -> None:
    me = f"{socket.gethostname()} {os.getpid()}"
    listing = f"PROC 12 job-gpu0\nFILE job-gpu0 12 {me}\n"
    refuse_or_kill_stale(Listing(listing), "c", "hv", Notes(), kill_stale=False)


def test_another_hvinfra_s_running_job_is_still_refused() -> None:
    other = f"{socket.gethostname()} {os.getppid()}"  # alive, and not this process
    listing = f"PROC 12 job-x\nFILE job-x 12 {other}\n"
    with pytest.raises(ContainerStateError, match="already running job job-x"):
        refuse_or_kill_stale(Listing(listing), "c", "hv", Notes(), kill_stale=False)
