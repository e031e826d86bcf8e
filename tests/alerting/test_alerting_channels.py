"""The channel registry: found from the package's modules, and the one source the CLI, the API
and the subscriptions form read (no services needed)."""

from __future__ import annotations

import argparse

import pytest

from analytics.alerting import channels as registry
from analytics.alerting.channels import (
    Channel,
    Field,
    Outcome,
    channel,
    channel_names,
    setting_fields,
)
from analytics.alerting.config import AlertingError


class SmsChannel(Channel):
    """What a new channel module would define (``channels/sms.py``)."""

    name = "sms"
    label_zh = "短信"
    label_en = "SMS"
    order = 40
    fields = (Field("phone", "手机号", "Mobile number", r"^\+?\d{11,15}$", "the sms channel needs a mobile number"),)

    def send(self, *, settings, config, sub, payload, delivery_key) -> Outcome:
        return Outcome(True, f"sms to {sub['phone']}")


@pytest.fixture
def with_sms(monkeypatch):
    found = registry.channels()
    monkeypatch.setattr(registry, "channels", lambda: (*found, SmsChannel()))


def test_the_registry_finds_every_channel_module():
    assert channel_names() == ("inbox", "webhook", "email")
    assert [f.name for f in setting_fields()] == ["webhook_url", "email"]
    assert channel("inbox").inline and not channel("webhook").inline
    assert channel("webhook").generated == ("secret",)
    with pytest.raises(AlertingError, match="unknown channel 'fax'; use one of inbox, webhook, email"):
        channel("fax")


def test_each_channel_validates_its_own_settings():
    channel("webhook").validate({"webhook_url": "https://hooks.example.org/x"})
    with pytest.raises(AlertingError, match="webhook URL"):
        channel("webhook").validate({"webhook_url": "ftp://x"})
    with pytest.raises(AlertingError, match="e-mail address"):
        channel("email").validate({"email": "not-an-address"})
    channel("inbox").validate({})  # nothing to configure


def test_the_webhook_secret_is_made_once_and_kept():
    wh = channel("webhook")
    made = wh.generate({})["secret"]
    assert len(made) == 64 and made != wh.generate({})["secret"]
    assert wh.generate({"secret": "given"}) == {"secret": "given"}
    assert wh.generate({}, {"secret": "kept"}) == {"secret": "kept"}


def test_a_new_channel_reaches_the_cli_the_api_and_the_form(with_sms):
    from analytics.alerting.cli import register
    from apps import subscriptions_view
    from apps.api import openapi_document

    assert channel_names()[-1] == "sms"
    schema = openapi_document()["components"]["schemas"]["SubscriptionNew"]["properties"]
    assert "phone" in schema and schema["channels"]["items"]["enum"][-1] == "sms"
    assert "phone" in subscriptions_view.fields()
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["subscriptions", "add", "--name", "n", "--region", "440100",
                              "--channels", "sms", "--phone", "+8613800000000"])
    assert args.phone == "+8613800000000"
    with pytest.raises(AlertingError, match="mobile number"):
        channel("sms").validate({"phone": "12"})
