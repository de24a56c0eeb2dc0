"""Where webhooks may go: the URL's form and the address policy (SSRF)."""

from __future__ import annotations

import ipaddress

import pytest

from keyledger.domain.webhook_urls import UrlRefused, check_addresses, networks, parse_target, refusal


@pytest.mark.parametrize("url", ["https://hooks.example.com/in?x=1", "http://hooks.example.com:8080/",
                                 "https://93.184.216.34/", "https://[2606:2800:220:1::1]/"])
def test_good_urls_parse(url: str) -> None:
    assert parse_target(url).url == url


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://hooks.example.com/", "https:// or http://"), ("file:///etc/passwd", "https:// or http://"),
    ("https://user:pw@hooks.example.com/", "credentials"), ("https://user@hooks.example.com/", "credentials"),
    ("https:///path", "host"), ("https://hooks.example.com/#x", "fragment"), ("https://a b.com/", "spaces"),
    ("https://hooks.example.com:99999/", "valid URL"), ("https://" + "a" * 2000 + ".com/", "longer"),
    ("https://2130706433/", "number"), ("https://0x7f.1/", "number"), ("https://0177.0.0.1/", "number"),
    ("https://127.1/", "number"), ("https://017700000001/", "number"), ("https://bad_host!/", "host name"),
])
def test_bad_urls_are_refused_saying_why(url: str, why: str) -> None:
    with pytest.raises(UrlRefused, match=why):
        parse_target(url)


def test_the_target_keeps_the_host_for_the_host_header() -> None:
    target = parse_target("https://Hooks.Example.com:8443/in?a=b")
    assert (target.host, target.port, target.target, target.host_header) == (
        "hooks.example.com", 8443, "/in?a=b", "hooks.example.com:8443")
    assert parse_target("http://1.2.3.4/").literal and parse_target("http://1.2.3.4/").host_header == "1.2.3.4"


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.9.9.9", "::1", "0.0.0.0", "::", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "fe80::1", "fd00:ec2::254", "fc00::1", "100.64.0.1", "100.100.100.200", "224.0.0.1", "239.1.1.1", "ff02::1",
    "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1", "fec0::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",
    "2002:7f00:1::1", "2002:a9fe:a9fe::1", "::127.0.0.1", "2001:0:4136:e378:8000:63bf:80ff:fffe",
])
def test_internal_and_metadata_addresses_are_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:2800:220:1::1", "::ffff:8.8.8.8",
                                     "64:ff9b::808:808"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_an_allowed_network_lets_its_addresses_pass_also_mapped() -> None:
    allowed = networks(["127.0.0.0/8"])
    assert refusal(ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("169.254.169.254"), allowed) is not None
    assert refusal(ipaddress.ip_address("::1"), allowed) is not None


def test_every_address_of_a_host_must_pass() -> None:
    public, loopback = ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("127.0.0.1")
    check_addresses("hooks.example.com", [public])
    with pytest.raises(UrlRefused, match="'hooks.example.com' resolves to 127.0.0.1: 127.0.0.1 is a loopback"):
        check_addresses("hooks.example.com", [public, loopback])
    with pytest.raises(UrlRefused, match="169.254.169.254 is a link-local"):
        check_addresses("169.254.169.254", [ipaddress.ip_address("169.254.169.254")])
    with pytest.raises(UrlRefused, match="does not resolve"):
        check_addresses("hooks.example.com", [])
