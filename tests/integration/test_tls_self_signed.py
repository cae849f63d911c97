"""TLS verification is on unless a connection turns it off: both sandboxes served over HTTPS on loopback with a
certificate made at test time and signed by nobody, reached through the hooks as a task would reach them."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from include.imis_thrive.airflow.hooks.imis import ImisHook
from include.imis_thrive.airflow.hooks.thrive import ThriveHook
from include.imis_thrive.errors import BadConfiguration
from include.imis_thrive.tls import CertificateRefused
from sandbox.__main__ import build_sandboxes
from sandbox.airflow_settings import load_settings
from sandbox.server import SandboxServer

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class SelfSigned:
    certfile: Path
    keyfile: Path


def _self_signed_certificate(common_name: str, folder: Path) -> SelfSigned:
    """A CA certificate that signs itself, valid for 127.0.0.1 and localhost, written as PEM into `folder`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = folder / "server.pem", folder / "server.key"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return SelfSigned(certfile, keyfile)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> SelfSigned:
    """What a test server, or the root of a private CA, presents: a certificate no public CA signed."""
    return _self_signed_certificate("imis-thrive loopback test", tmp_path_factory.mktemp("tls"))


@dataclass(frozen=True)
class HttpsServers:
    imis_url: str
    thrive_url: str


@pytest.fixture(scope="module")
def https_servers(self_signed) -> Iterator[HttpsServers]:
    imis, thrive = build_sandboxes(load_settings(), contacts=20, seed=3, broken_lists=False)
    tls = {"certfile": str(self_signed.certfile), "keyfile": str(self_signed.keyfile)}
    with SandboxServer(imis.app, **tls) as imis_server, SandboxServer(thrive.app, **tls) as thrive_server:
        yield HttpsServers(imis_server.url, f"{thrive_server.url}{thrive.config.endpoint_path}")


def _imis_client(monkeypatch, servers: HttpsServers, tmp_path: Path, **tls_extras):
    imis = load_settings().connection("imis_default")
    monkeypatch.setenv("AIRFLOW_CONN_IMIS_DEFAULT", json.dumps({
        "conn_type": "imis", "host": servers.imis_url, "login": imis.conn_login, "password": imis.conn_password,
        "extra": {"token_store_dir": str(tmp_path / "tokens"), **tls_extras}}))
    return ImisHook().get_client()


def _thrive_client(monkeypatch, servers: HttpsServers, **tls_extras):
    thrive = load_settings().connection("thrive_default")
    monkeypatch.setenv("AIRFLOW_CONN_THRIVE_DEFAULT", json.dumps({
        "conn_type": "thrive", "host": servers.thrive_url, "login": thrive.conn_login,
        "password": thrive.conn_password, "extra": {**thrive.conn_extra, **tls_extras}}))
    return ThriveHook().get_client()


def _first_call(kind: str, monkeypatch, servers: HttpsServers, tmp_path: Path, **tls_extras):
    """The first thing each task does: log in to iMIS, or read the interests of the Thrive brand."""
    if kind == "imis":
        with _imis_client(monkeypatch, servers, tmp_path, **tls_extras) as client:
            return client.login().value
    with _thrive_client(monkeypatch, servers, **tls_extras) as client:
        return [interest.name for interest in client.interests()]


@pytest.mark.parametrize("kind", ["imis", "thrive"])
def test_a_self_signed_server_is_refused_by_default_naming_the_host(https_servers, monkeypatch, tmp_path, kind):
    with pytest.raises(CertificateRefused) as refused:
        _first_call(kind, monkeypatch, https_servers, tmp_path)

    port = (https_servers.imis_url if kind == "imis" else https_servers.thrive_url).split(":")[2].split("/")[0]
    message = str(refused.value)
    assert f"127.0.0.1:{port}" in message
    assert "certificate" in message and "ca_bundle" in message and "verify" in message
    assert isinstance(refused.value, BadConfiguration)  # fails the task at once: a retry meets the same cert


@pytest.mark.parametrize("kind", ["imis", "thrive"])
def test_the_connection_can_turn_verification_off(https_servers, monkeypatch, tmp_path, kind):
    assert _first_call(kind, monkeypatch, https_servers, tmp_path, verify=False)


@pytest.mark.parametrize("kind", ["imis", "thrive"])
def test_verification_off_as_the_connection_form_stores_it(https_servers, monkeypatch, tmp_path, kind):
    assert _first_call(kind, monkeypatch, https_servers, tmp_path, verify="false")


@pytest.mark.parametrize("kind", ["imis", "thrive"])
def test_a_ca_bundle_keeps_verification_on_and_trusts_that_ca(https_servers, self_signed, monkeypatch, tmp_path,
                                                              kind):
    assert _first_call(kind, monkeypatch, https_servers, tmp_path, ca_bundle=str(self_signed.certfile))


@pytest.mark.parametrize("kind", ["imis", "thrive"])
def test_a_ca_bundle_of_another_ca_is_still_refused(https_servers, monkeypatch, tmp_path, tmp_path_factory, kind):
    other = _self_signed_certificate("some other CA", tmp_path_factory.mktemp("other-ca"))

    with pytest.raises(CertificateRefused, match=r"127\.0\.0\.1"):
        _first_call(kind, monkeypatch, https_servers, tmp_path, ca_bundle=str(other.certfile))
