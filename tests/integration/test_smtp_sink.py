"""The loopback SMTP sink over real SMTP: what a sender hands it is what a test reads back."""

import smtplib
from email.message import EmailMessage

from sandbox.smtp import SmtpSink


def _send(sink: SmtpSink, subject: str, html: str, to: tuple[str, ...] = ("ops@sandbox.invalid",)) -> None:
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = subject, "airflow@sandbox.invalid", ", ".join(to)
    message.set_content(html, subtype="html")
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        client.send_message(message)


def test_sink_listens_on_a_free_port_and_keeps_what_it_receives():
    with SmtpSink() as sink:
        assert sink.port > 0
        _send(sink, "Airflow alert: café", "<p>load_target_group failed</p>", to=("a@x.org", "b@x.org"))

        [mail] = sink.messages
        assert (mail.mail_from, mail.recipients) == ("airflow@sandbox.invalid", ("a@x.org", "b@x.org"))
        assert mail.subject == "Airflow alert: café"
        assert mail.body().strip() == "<p>load_target_group failed</p>"


def test_sink_keeps_only_the_newest_messages_and_can_be_cleared():
    seen: list[str] = []
    with SmtpSink(keep=2, on_mail=lambda mail: seen.append(mail.subject)) as sink:
        for number in range(3):
            _send(sink, f"alert {number}", "<p>x</p>")

        assert [mail.subject for mail in sink.messages] == ["alert 1", "alert 2"]
        assert seen == ["alert 0", "alert 1", "alert 2"]
        sink.clear()
        assert sink.messages == []
