import json
import logging

import pytest

from include.imis_thrive.airflow.hooks.thrive import ThriveHook
from include.imis_thrive.errors import BadConnectionSetting
from include.imis_thrive.thrive.client import ThriveClient

PASSWORD = "s3cret-thrive-pass"


@pytest.fixture
def thrive_connection(monkeypatch):
    def set_connection(**fields):
        document = {"conn_type": "thrive", "host": "https://partner.informz.net/aapi/InformzService.svc",
                    "login": "api_user", "password": PASSWORD,
                    "extra": {"brand_id": 7001, "brand_name": "My Association", "bulk_threshold": "2500"}}
        document.update(fields)
        monkeypatch.setenv("AIRFLOW_CONN_THRIVE_DEFAULT", json.dumps(document))

    return set_connection


def test_connection_becomes_client_config(thrive_connection):
    thrive_connection()
    config = ThriveHook().get_config()

    assert config.endpoint == "https://partner.informz.net/aapi/InformzService.svc"
    assert (config.brand_id, config.brand_name, config.user) == ("7001", "My Association", "api_user")
    assert config.password.get_secret_value() == PASSWORD
    assert config.bulk_threshold == 2500
    assert PASSWORD not in repr(config)


def test_a_host_without_scheme_gets_https_and_defaults_apply(thrive_connection):
    thrive_connection(host="partnertest.informz.net/aapi/InformzService.svc",
                      extra={"brand_id": "1", "brand_name": "B"})
    config = ThriveHook().get_config()

    assert config.endpoint == "https://partnertest.informz.net/aapi/InformzService.svc"
    assert (config.bulk_threshold, config.poll_interval_s) == (5000, 5.0)


def test_the_port_field_goes_into_the_endpoint_before_its_path(thrive_connection):
    thrive_connection(host="http://127.0.0.1/aapi/InformzService.svc", port=18932)
    assert ThriveHook().get_config().endpoint == "http://127.0.0.1:18932/aapi/InformzService.svc"


def test_missing_fields_are_named(thrive_connection):
    thrive_connection(password=None, extra={"brand_name": "B"})

    with pytest.raises(BadConnectionSetting, match="connection thrive_default: password, extra brand_id must be set"):
        ThriveHook().get_config()


def test_an_invalid_extra_is_a_bad_connection_setting_naming_it(thrive_connection):
    thrive_connection(extra={"brand_id": "1", "brand_name": "B", "bulk_threshold": -1})

    with pytest.raises(BadConnectionSetting, match="connection thrive_default: extra bulk_threshold is invalid"):
        ThriveHook().get_config()


def test_get_client_masks_the_password_and_never_logs_it(thrive_connection, caplog, monkeypatch):
    thrive_connection()
    masked = []
    monkeypatch.setattr("airflow.sdk.log.mask_secret", lambda secret, name=None: masked.append(secret))

    with caplog.at_level(logging.DEBUG):
        client = ThriveHook().get_client()

    assert isinstance(client, ThriveClient)
    assert PASSWORD in masked
    assert PASSWORD not in caplog.text
    client.close()


def test_the_connection_form_is_registered_with_airflow():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert manager.hooks["thrive"].hook_class_name == "include.imis_thrive.airflow.hooks.thrive.ThriveHook"
    assert manager.field_behaviours["thrive"]["hidden_fields"] == ["schema"]  # the port shows: the Test button
    assert manager.field_behaviours["thrive"]["relabeling"]["host"] == "AAPI endpoint URL"
    assert {"extra__thrive__brand_id", "extra__thrive__brand_name", "extra__thrive__bulk_threshold"} <= set(
        manager.connection_form_widgets)


def test_bulk_upload_settings_come_from_the_connection_extras(thrive_connection):
    thrive_connection(extra={"brand_id": "1", "brand_name": "B", "status_email_recipients": "ops@x.org, dba@x.org",
                             "compress_grids": "true", "startrow_base": "1"})
    config = ThriveHook().get_config()

    assert config.status_email_recipients == ["ops@x.org", "dba@x.org"]
    assert (config.compress_grids, config.startrow_base) == (True, 1)
