"""``plugstream firewall``: the vendor article's outgoing allow-list (Table 2) as a site's router
admin loads it. Each format must carry every row of the article; the rulesets must load (checked
with ``nft -c`` / ``iptables-restore --test`` where those tools are installed) and never name a
host in a rule, since a name would be resolved once at load time and go stale."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plugstream.netcheck.firewall import render

# Table 2 of /work/shared/seed/network-requirements.txt, "Outgoing Port Usage by domain".
TABLE_2 = [
    ("123", "UDP", "pool.ntp.org"),
    ("443", "TCP", "ocpp.ampnexus.net"),
    ("443", "TCP", "setup.plugstream.co.uk"),
    ("53", "UDP", "1.1.1.1"),
    ("53", "UDP", "1.0.0.1"),
]
HOSTS = ("pool.ntp.org", "ocpp.ampnexus.net", "setup.plugstream.co.uk")
SUBNET = "192.168.50.0/24"
DHCP_DNS = ("192.168.50.1", "192.168.50.2")


def rule_lines(text: str) -> list[str]:
    """The lines that are rules, not the notes around them."""
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def find_rule(text: str, fmt: str, port: str, protocol: str, destination: str) -> list[str]:
    """The rule lines that let ``protocol``/``port`` out to ``destination`` (named in its comment)."""
    proto = protocol.lower()
    if fmt == "nftables":
        wanted = [f"{proto} dport {port} accept", f'comment "{destination}: ']
    else:
        wanted = [f"-p {proto} --dport {port}", f'--comment "{destination}: ']
    return [line for line in rule_lines(text) if all(w in line for w in wanted)]


def without_comments(line: str) -> str:
    return re.sub(r'"[^"]*"', '""', line)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plugstream.cli", "firewall", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check_loads(fmt: str, text: str, tmp_path: Path) -> None:
    """Where the real tools are installed, the ruleset passes their check mode (no kernel change)."""
    path = tmp_path / f"plugstream.{fmt}"
    path.write_text(text)
    if fmt == "nftables" and shutil.which("nft"):
        done = subprocess.run(
            ["nft", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
    if fmt == "iptables" and shutil.which("iptables-restore"):
        done = subprocess.run(
            ["iptables-restore", "--test", "--noflush", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("fmt", ["nftables", "iptables"])
@pytest.mark.parametrize("subnet", [SUBNET, None])
@pytest.mark.socket
def test_ruleset_allows_every_table_2_row_and_loads(
    fmt: str, subnet: str | None, tmp_path: Path
) -> None:
    text = render(fmt, dns_servers=DHCP_DNS, station_subnet=subnet)
    for port, protocol, destination in TABLE_2:
        assert len(find_rule(text, fmt, port, protocol, destination)) == 1, destination
    check_loads(fmt, text, tmp_path)


@pytest.mark.parametrize("fmt", ["nftables", "iptables"])
@pytest.mark.unit
def test_ruleset_never_puts_a_host_name_in_a_rule(fmt: str) -> None:
    """A name in a rule would be resolved by nft/iptables once, at load, and go stale (and a
    check run would query DNS); the names may appear only in comments and in the fill notes."""
    text = render(fmt, station_subnet=SUBNET)
    for line in rule_lines(text):
        for host in HOSTS:
            assert host not in without_comments(line), line
    for host in HOSTS:  # the admin is told how to fill each name's addresses from DNS
        assert any(f"dig +short A {host}" in line for line in text.splitlines()), host


@pytest.mark.unit
def test_nftables_accepts_answers_and_drops_the_rest_of_the_stations_traffic() -> None:
    text = render("nftables", station_subnet=SUBNET)
    assert "table inet plugstream {" in text
    assert f"elements = {{ {SUBNET} }}" in text
    chain = text.split("chain from_stations {")[1].split("}")[0]
    lines = rule_lines(chain)
    assert lines[0] == "ct state established,related accept"
    assert "drop" in lines[-1]
    # only the station subnet is filtered: other hosts keep the router's own policy
    assert "policy accept;" in text.split("chain forward {")[1]
    incoming = rule_lines(text.split("chain to_stations {")[1].split("}")[0])
    assert incoming == ["ct state established,related accept", "counter drop"]


@pytest.mark.unit
def test_nftables_without_subnet_filters_nothing_until_stations_are_added() -> None:
    text = render("nftables")
    stations = text.split("set stations {")[1].split("}")[0]
    assert "elements" not in stations
    assert "nft add element inet plugstream stations" in text


@pytest.mark.unit
def test_iptables_filters_only_the_subnet_and_drops_the_rest() -> None:
    text = render("iptables", station_subnet=SUBNET)
    lines = rule_lines(text)
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"
    assert f"-I FORWARD 1 -s {SUBNET} -j PLUGSTREAM-OUT" in lines
    assert f"-I FORWARD 2 -d {SUBNET} -j PLUGSTREAM-IN" in lines
    out = [line for line in lines if line.startswith("-A PLUGSTREAM-OUT ")]
    assert out[0] == "-A PLUGSTREAM-OUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
    assert out[-1].endswith("-j DROP")
    assert not any(":FORWARD" in line for line in lines)  # the admin's policy stays
    assert "--noflush" in text  # plain iptables-restore would replace the whole filter table


@pytest.mark.unit
def test_csv_is_table_2_then_dhcp_dns_and_dhcp() -> None:
    rows = list(csv.reader(io.StringIO(render("csv"))))
    assert rows[0] == ["port", "protocol", "destination", "purpose"]
    assert [row[:3] for row in rows[1:6]] == [list(row) for row in TABLE_2]
    assert [row[:3] for row in rows[6:]] == [
        ["53", "UDP", "DNS servers from DHCP"],
        ["67", "UDP", "DHCP server (LAN broadcast)"],
    ]
    assert all(row[3] for row in rows[1:])  # every row says why the station needs it


@pytest.mark.unit
def test_dns_adds_one_rule_per_dhcp_dns_server_in_every_format() -> None:
    rows = list(csv.reader(io.StringIO(render("csv", dns_servers=DHCP_DNS))))
    assert [row[:3] for row in rows[6:]] == [
        ["53", "UDP", "192.168.50.1"],
        ["53", "UDP", "192.168.50.2"],
        ["67", "UDP", "DHCP server (LAN broadcast)"],
    ]
    nft = render("nftables", dns_servers=DHCP_DNS)
    ipt = render("iptables", dns_servers=DHCP_DNS)
    for server in DHCP_DNS:
        assert any(
            line.startswith(f"ip daddr {server} udp dport 53 accept") for line in rule_lines(nft)
        )
        assert any(f"-d {server}/32 -p udp --dport 53" in line for line in rule_lines(ipt))
    # without --dns a comment line says the DHCP servers are missing, and no rule is made up
    plain = render("nftables")
    assert "DNS servers from DHCP: none given" in plain
    assert not any("192.168.50." in line for line in rule_lines(plain) if "dport 53" in line)


@pytest.mark.unit
def test_dns_server_already_in_table_2_is_listed_once() -> None:
    rows = list(csv.reader(io.StringIO(render("csv", dns_servers=["1.1.1.1", "9.9.9.9"]))))
    assert [row[2] for row in rows].count("1.1.1.1") == 1
    assert [row[2] for row in rows].count("9.9.9.9") == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "pf"}, "nftables"),
        ({"dns_servers": ["dns.example"]}, "not an IP address"),
        ({"dns_servers": ["2001:db8::53"]}, "IPv4"),
        ({"station_subnet": "10.0.0.7/24"}, "did you mean 10.0.0.0/24"),
    ],
)
@pytest.mark.unit
def test_render_refuses_what_it_cannot_express(kwargs: dict[str, object], message: str) -> None:
    fmt = kwargs.pop("fmt", "nftables")
    with pytest.raises(ValueError, match=message):
        render(str(fmt), **kwargs)  # type: ignore[arg-type]


@pytest.mark.socket
def test_cli_prints_the_csv_allow_list() -> None:
    done = run_cli("--format", "csv", "--dns", "192.168.50.1", "--dns", "192.168.50.2")
    assert done.returncode == 0, done.stderr
    assert done.stdout == render("csv", dns_servers=DHCP_DNS)


@pytest.mark.socket
def test_cli_nftables_output_loads(tmp_path: Path) -> None:
    done = run_cli("--format", "nftables", "--subnet", SUBNET, "--dns", "192.168.50.1")
    assert done.returncode == 0, done.stderr
    assert "ip daddr 192.168.50.1 udp dport 53 accept" in done.stdout
    check_loads("nftables", done.stdout, tmp_path)


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (("--format", "pf"), "--format"),
        (("--format", "nftables", "--dns", "1.2.3"), "--dns"),
        (("--format", "iptables", "--dns", "::1"), "--dns"),
        (("--format", "csv", "--subnet", "10.0.0.5/24"), "--subnet"),
        (("--format", "nftables", "--subnet", "fd00::/64"), "--subnet"),
        (
            (
                "--dns",
                "192.168.50.1",
            ),
            "--format",
        ),
    ],
)
@pytest.mark.socket
def test_cli_bad_flag_is_one_line_and_exit_code_2(args: tuple[str, ...], mentions: str) -> None:
    done = run_cli(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plugstream: error: "), done.stderr
    assert mentions in lines[0]
    assert done.stdout == ""
