"""`streamlit run app.py` as the README gives it listens on the loopback address only: the dashboard has no login,
and anyone who can reach it can launch, stop and delete runs (issue 20)."""
from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from conftest import StreamlitServer

LISTEN = "0A"


def listening(port: int) -> list[str]:
    """The local addresses of the sockets listening on TCP `port` (IPv4 and IPv6), from /proc/net."""
    out = []
    for table, size in (("tcp", 4), ("tcp6", 16)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, _, state = line.split()[1:4]
            addr, p = local.split(":")
            if int(p, 16) != port or state != LISTEN:
                continue
            raw = bytes.fromhex(addr)
            # /proc/net prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            out.append(str(ipaddress.ip_address(raw)))
    return out


def test_the_dashboard_listens_on_loopback_only(tmp_path, tiny_data):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp to read listening sockets from")
    runs = tmp_path / "runs"
    runs.mkdir()
    home = tmp_path / "home"  # no ~/.streamlit/config.toml of this machine's user
    home.mkdir()
    # no address flag: the command the README gives, with only what a test needs (a port, no browser)
    srv = StreamlitServer({"HOME": str(home), "MNISTVIZ_RUNS": str(runs), "MNISTVIZ_DATA": str(tiny_data)},
                          address=None, flags=("--server.headless=true",))
    try:
        addrs = listening(srv.port)
    finally:
        srv.stop()
    assert addrs, f"nothing listens on port {srv.port}"
    assert all(ipaddress.ip_address(a).is_loopback for a in addrs), addrs
