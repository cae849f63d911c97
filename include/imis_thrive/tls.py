"""TLS certificate verification for both clients: on unless a connection turns it off, and a refusal said plainly.

httpx verifies certificates by default; what this adds is the connection's say (`verify` off for a test host,
or `ca_bundle` naming the PEM of a private CA, which keeps verification on) and an error that names the host
and the two extras, instead of a `ConnectError` retried six times and then reported as the system being down.
"""

from __future__ import annotations

import ssl

import httpx

from include.imis_thrive.errors import BadConfiguration


class CertificateRefused(BadConfiguration):
    """The server's TLS certificate failed verification: a retry meets the same certificate, so fail at once."""

    def __init__(self, what: str, host: str, reason: str) -> None:
        self.host = host
        super().__init__(
            f"{what}: the TLS certificate of {host} was refused ({reason}); if this host uses a private or "
            "self-signed certificate, set the connection's extra ca_bundle to the PEM file of its CA, or, for a "
            "test host only, set extra verify to false")


class CaBundleUnreadable(BadConfiguration):
    """The connection's `ca_bundle` is not a readable PEM file on this worker."""


def verification(verify: bool = True, ca_bundle: str | None = None) -> bool | ssl.SSLContext:
    """httpx's `verify=` for a connection's two extras: the system's CAs, a CA bundle, or (verify off) none."""
    if not verify:
        return False
    if ca_bundle:
        try:
            return ssl.create_default_context(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as error:
            raise CaBundleUnreadable(f"extra ca_bundle {ca_bundle!r} is not a readable PEM file of CA certificates "
                                     f"on this worker ({error})") from error
    return True


def certificate_failure(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate-verification failure behind a transport error, if that is what it was."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def refused_certificate(what: str, error: httpx.TransportError) -> CertificateRefused | None:
    """`CertificateRefused` naming the host, when `error` is a certificate refusal; else None."""
    failure = certificate_failure(error)
    if failure is None:
        return None
    try:
        host = f"{error.request.url.host}:{error.request.url.port or 443}"
    except RuntimeError:  # an error raised outside a client call carries no request
        host = "the server"
    return CertificateRefused(what, host, failure.verify_message or str(failure))
