"""The connection's two TLS extras as httpx's `verify=`; an unreadable CA bundle is a setting to fix, named."""

from __future__ import annotations

import ssl

import pytest

from include.imis_thrive.errors import BadConfiguration
from include.imis_thrive.tls import CaBundleUnreadable, verification


def test_verification_is_on_by_default_and_off_only_when_asked():
    assert verification() is True
    assert verification(verify=False) is False
    assert verification(verify=False, ca_bundle="/etc/ssl/private-ca.pem") is False  # off wins: nothing to read


def _ca_pem() -> bytes:
    """A self-signed CA certificate, made here: the shape of a private CA's root."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "private CA")])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def test_a_ca_bundle_keeps_verification_on_with_those_cas(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(_ca_pem())
    context = verification(ca_bundle=str(bundle))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1


@pytest.mark.parametrize("content", [None, "not a certificate"])
def test_an_unreadable_ca_bundle_names_the_extra_and_the_path(tmp_path, content):
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_text(content)
    with pytest.raises(CaBundleUnreadable, match=r"extra ca_bundle '.*ca\.pem' is not a readable PEM") as refused:
        verification(ca_bundle=str(bundle))
    assert isinstance(refused.value, BadConfiguration)
