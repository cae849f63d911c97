"""A loopback SMTP sink: the mail server the `smtp_default` connection points at in the demo and the tests.

Failure alerts go out through Airflow's `SmtpNotifier`; this sink receives them on 127.0.0.1, keeps the last
messages in memory and (under `make sandbox`) prints one line per message, so an alert can be seen arriving
and a test can assert on its subject and body. It accepts every envelope: it is never a relay.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

DEFAULT_KEEP = 1000


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the sink accepted it: the SMTP envelope and the parsed message."""

    mail_from: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def body(self) -> str:
        """The HTML part if there is one, else the plain-text part (alerts are HTML)."""
        part = self.message.get_body(preferencelist=("html", "plain"))
        return part.get_content() if part is not None else ""


class _Inbox:
    """The aiosmtpd handler: parses each DATA into a `ReceivedMail`, keeping the newest `keep` of them."""

    def __init__(self, keep: int, on_mail: Callable[[ReceivedMail], None] | None) -> None:
        self._mails: deque[ReceivedMail] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._on_mail = on_mail

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        mail = ReceivedMail(str(envelope.mail_from or ""), tuple(envelope.rcpt_tos), message)
        with self._lock:
            self._mails.append(mail)
        if self._on_mail is not None:
            self._on_mail(mail)
        return "250 Message accepted for delivery"

    def mails(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._mails)

    def clear(self) -> None:
        with self._lock:
            self._mails.clear()


class _BoundController(Controller):
    """aiosmtpd's threaded controller serving a socket bound beforehand, so port 0 yields a known free port."""

    def __init__(self, handler: _Inbox, sock: socket.socket, **kwargs: Any) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)
        self._sock = sock

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class SmtpSink:
    """A real SMTP server on 127.0.0.1 (a thread of its own) that stores what it receives; `port` 0 picks one."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", keep: int = DEFAULT_KEEP,
                 on_mail: Callable[[ReceivedMail], None] | None = None) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self._inbox = _Inbox(keep, on_mail)
        # The defaults (UTF-8 off, 32 MiB limit) suit alert mail; no AUTH, no STARTTLS: loopback only.
        self._controller = _BoundController(self._inbox, self._socket)

    @property
    def messages(self) -> list[ReceivedMail]:
        """What arrived so far, oldest first (a copy: the server thread may append meanwhile)."""
        return self._inbox.mails()

    def clear(self) -> None:
        self._inbox.clear()

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
        self._socket.close()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def print_mail(mail: ReceivedMail) -> None:
    """One line per alert received, for a sink running in the foreground (`make sandbox`)."""
    print(f"alert mail to {', '.join(mail.recipients)}: {mail.subject}", flush=True)
