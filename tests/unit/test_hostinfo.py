"""Host reads behind pre-flight: /proc limits, capabilities, disk, the docker socket's peer."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from hvinfra import hostinfo

LIMITS = """Limit                     Soft Limit           Hard Limit           Units
Max open files            1048576              1048576              files
Max locked memory         8388608              8388608              bytes
"""


def test_memlock_row_is_read_in_bytes() -> None:
    assert hostinfo.parse_limits(LIMITS) == (8388608, 8388608)
    unlimited = LIMITS.replace("8388608              8388608", "unlimited            unlimited")
    assert hostinfo.parse_limits(unlimited) == (-1, -1)


def test_cap_sys_resource_bit_is_read_from_capeff() -> None:
    assert hostinfo.has_capability("CapEff:\t000001ffffffffff\n", hostinfo.CAP_SYS_RESOURCE)
    assert not hostinfo.has_capability("CapEff:\t00000000a80425fb\n", hostinfo.CAP_SYS_RESOURCE)


def test_disk_free_measures_the_nearest_existing_folder(tmp_path: Path) -> None:
    free = hostinfo.disk_free(str(tmp_path / "not" / "yet" / "made"))
    assert free is not None
    assert free.measured_at == str(tmp_path)
    assert free.free_bytes > 0


def test_local_socket_only_for_unix_hosts() -> None:
    assert hostinfo.local_socket(None) == hostinfo.DEFAULT_SOCKET
    assert hostinfo.local_socket("unix:///run/d.sock") == "/run/d.sock"
    assert hostinfo.local_socket("tcp://10.0.0.1:2376") is None


def test_socket_peer_is_the_listening_process(tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        assert hostinfo._socket_peer_pid(path) == os.getpid()


def test_daemon_process_reads_a_proc_folder(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "limits").write_text(LIMITS)
    (tmp_path / "42" / "status").write_text("Name:\tdockerd\nCapEff:\t00000000a80425fb\n")
    (tmp_path / "42" / "comm").write_text("dockerd\n")
    process = hostinfo.daemon_process(42, proc=tmp_path)
    assert process == hostinfo.DaemonProcess(42, 8388608, 8388608, cap_sys_resource=False)
    assert hostinfo.daemon_pid(str(tmp_path / "none.sock"), proc=tmp_path) == 42
