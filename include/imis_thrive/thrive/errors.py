"""Typed Thrive errors; each message names what a person must fix (the connection, interest, action or upload).

Each is one kind of `include/imis_thrive/errors.py`, which decides whether Airflow retries it."""

from __future__ import annotations

from include.imis_thrive.errors import BadConfiguration, BadData, ImisThriveError, TransientTrouble


class ThriveError(ImisThriveError):
    """Base class for every failure talking to Thrive Marketing Professional; a family, never raised itself."""


class ThriveFault(ThriveError, BadConfiguration):
    """A SOAP fault of type `InformzAAPIFault`: the tenant refused the document; retrying will not help.

    Bad configuration: the tenant's word on what this brand and user may do (credentials, allowlist, grids,
    interests). Records Thrive will not take are counted in the action's reply and quarantined, not faulted."""

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


class InterestNotFound(ThriveError, BadConfiguration):
    """The interest does not exist in the brand; the AAPI cannot create one, a person must (Thrive UI)."""

    def __init__(self, interest: str) -> None:
        self.interest = interest
        super().__init__(
            f"interest {interest!r} does not exist in Thrive; create the target group in Thrive "
            "(the AAPI has no action that creates interests) or fix the list IQA's name"
        )


class ThriveHTTPError(ThriveError, BadConfiguration):
    """An HTTP status that is neither success nor a SOAP fault (wrong endpoint URL, proxy error page...).

    Bad configuration: 429 and 5xx are retried by the client and end as `ThriveUnavailable`; what is left
    (a redirect, 404, 401 from a proxy) is an endpoint that is not the AAPI."""

    def __init__(self, what: str, status_code: int, detail: str) -> None:
        self.status_code = status_code
        super().__init__(f"{what}: HTTP {status_code} from the Thrive endpoint (check the connection host): {detail}")


class ThriveConfigurationError(ThriveError, BadConfiguration):
    """The thrive connection lacks a setting a call needs; retrying cannot help, a person must set it."""


class ThriveProtocolError(ThriveError, BadConfiguration):
    """The reply is not the document the wire format promises; the message says which part was missing.

    Bad configuration: the same request gets the same reply again (a torn reply is a transport error, which
    retries), so the endpoint or the tenant's alternative (compression, grids) is not the one the client expects."""


class ThriveActionFailed(ThriveError, BadConfiguration):
    """An action answered `ActionStatus/Status` other than success, without a SOAP fault.

    Bad configuration: a refusal of the whole action (not of a few records) comes from the brand's field
    definitions or the action's settings, which a retry sends unchanged."""

    def __init__(self, action: str, status: str, message: str) -> None:
        self.action = action
        self.status = status
        super().__init__(f"{action}: Thrive reported status {status!r}: {message}")


class UploadFailed(ThriveError, TransientTrouble):
    """A BulkUpload finished in a failed state; its row outcomes are unknown.

    Transient: Thrive's side of a job failed, and an upload is an upsert, so the retry is safe and usually
    succeeds; its rows are not the cause (per-row problems are counted, not failed)."""

    def __init__(self, upload_id: int, what: str, status: str) -> None:
        self.upload_id = upload_id
        super().__init__(
            f"{what}: BulkUpload {upload_id} ended with status {status!r}; see it in Thrive's upload history"
        )


class UploadTimeout(ThriveError, TransientTrouble):
    """A BulkUpload was still running when the client stopped waiting; it may still complete."""

    def __init__(self, upload_id: int, what: str, waited_s: float, status: str) -> None:
        self.upload_id = upload_id
        super().__init__(
            f"{what}: BulkUpload {upload_id} still {status!r} after {waited_s:.0f}s; it may still complete, "
            "so re-running the task resends the same upsert (safe: uploads are upserts)"
        )


class UnsendableValue(ThriveError, BadData):
    """A value holds characters XML 1.0 cannot carry (control characters, lone surrogates)."""


class ThriveUnavailable(ThriveError, TransientTrouble):
    """The endpoint kept failing (429/5xx/dropped connections) until the retry policy gave up."""
