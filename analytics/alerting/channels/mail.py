"""E-mail over SMTP (``TONGGUAN_SMTP_*``): a text body (Chinese first, then English) with the
JSON payload attached."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from analytics.alerting.channels.base import (
    Channel,
    Field,
    Outcome,
    body_bytes,
    render_text,
)


def send_email(settings, to: str, payload: dict, *, delivery_key: str, resend: bool = False) -> Outcome:
    """One message over SMTP (TONGGUAN_SMTP_*): text body plus the JSON attached."""
    subject, text = render_text(payload)
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Message-ID"] = make_msgid(idstring=delivery_key.replace(":", "."), domain="tongguan")
    msg["X-Tongguan-Delivery"] = delivery_key
    if resend:  # an earlier attempt may have arrived: the same message again (same Message-ID)
        msg["X-Tongguan-Resend"] = "1"
    msg.set_content(text)
    msg.add_attachment(body_bytes(payload), maintype="application", subtype="json", filename="alerts.json")
    try:
        cls = smtplib.SMTP_SSL if settings.smtp_ssl else smtplib.SMTP
        with cls(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout) as smtp:
            if settings.smtp_starttls and not settings.smtp_ssl:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                pw = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                smtp.login(settings.smtp_user, pw)
            refused = smtp.send_message(msg)
        if refused:
            return Outcome(False, f"refused: {refused}")
        return Outcome(True, f"SMTP accepted by {settings.smtp_host}:{settings.smtp_port}")
    except (smtplib.SMTPException, OSError) as exc:
        return Outcome(False, f"{type(exc).__name__}: {exc}")


class EmailChannel(Channel):
    name = "email"
    label_zh = "电子邮件"
    label_en = "E-mail"
    order = 30
    fields = (Field("email", "邮箱", "E-mail address", r"^[^@\s]+@[^@\s]+$",
                    "the email channel needs an e-mail address name@example.org (--email)",
                    placeholder="name@example.org"),)

    def send(self, *, settings, config, sub, payload, delivery_key, attempt=1, resend=False) -> Outcome:
        return send_email(settings, sub["email"], payload, delivery_key=delivery_key, resend=resend)


CHANNEL = EmailChannel()
