"""Typed Thrive errors; each message names what a person must fix (the connection, interest, action or upload)."""

from __future__ import annotations


class ThriveError(Exception):
    """Base class for every failure talking to Thrive Marketing Professional."""


class ThriveFault(ThriveError):
    """A SOAP fault of type `InformzAAPIFault`: the tenant refused the document; retrying will not help."""

    def __init__(self, what: str, code: str, reason: str) -> None:
        self.what = what
        self.code = code
        self.reason = reason
        super().__init__(f"{what}: Thrive refused it with {code}: {reason}")


class ThriveCredentialsError(ThriveFault):
    """Brand id, user or password refused, or this machine's IP is not on the brand's allowlist."""

    def __init__(self, what: str, code: str, reason: str) -> None:
        super().__init__(what, code, reason)
        self.args = (
            f"{what}: Thrive refused the credentials ({code}: {reason}); check the thrive connection's "
            "login, password and brand_id extra, and that Higher Logic has allowlisted this machine's IP",
        )


class ThriveItemNotFound(ThriveFault):
    """The document names something the brand does not have, most often an interest (target group)."""


class InterestNotFound(ThriveError):
    """The interest does not exist in the brand; the AAPI cannot create one, a person must (Thrive UI)."""

    def __init__(self, interest: str) -> None:
        self.interest = interest
        super().__init__(
            f"interest {interest!r} does not exist in Thrive; create the target group in Thrive "
            "(the AAPI has no action that creates interests) or fix the list IQA's name"
        )


class ThriveHTTPError(ThriveError):
    """An HTTP status that is neither success nor a SOAP fault (wrong endpoint URL, proxy error page...)."""

    def __init__(self, what: str, status_code: int, detail: str) -> None:
        self.status_code = status_code
        super().__init__(f"{what}: HTTP {status_code} from the Thrive endpoint (check the connection host): {detail}")


class ThriveConfigurationError(ThriveError):
    """The thrive connection lacks a setting a call needs; retrying cannot help, a person must set it."""


class ThriveProtocolError(ThriveError):
    """The reply is not the document the wire format promises; the message says which part was missing."""


class ThriveActionFailed(ThriveError):
    """An action answered `ActionStatus/Status` other than success, without a SOAP fault."""

    def __init__(self, action: str, status: str, message: str) -> None:
        self.action = action
        self.status = status
        super().__init__(f"{action}: Thrive reported status {status!r}: {message}")


class UploadFailed(ThriveError):
    """A BulkUpload finished in a failed state; its row outcomes are unknown."""

    def __init__(self, upload_id: int, what: str, status: str) -> None:
        self.upload_id = upload_id
        super().__init__(
            f"{what}: BulkUpload {upload_id} ended with status {status!r}; see it in Thrive's upload history"
        )


class UploadTimeout(ThriveError):
    """A BulkUpload was still running when the client stopped waiting; it may still complete."""

    def __init__(self, upload_id: int, what: str, waited_s: float, status: str) -> None:
        self.upload_id = upload_id
        super().__init__(
            f"{what}: BulkUpload {upload_id} still {status!r} after {waited_s:.0f}s; it may still complete, "
            "so re-running the task resends the same upsert (safe: uploads are upserts)"
        )


class UnsendableValue(ThriveError):
    """A value holds characters XML 1.0 cannot carry (control characters, lone surrogates)."""


class ThriveUnavailable(ThriveError):
    """The endpoint kept failing (429/5xx/dropped connections) until the retry policy gave up."""
