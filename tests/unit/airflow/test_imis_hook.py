import json

import pytest

from include.imis_thrive.airflow.hooks.imis import ImisHook
from include.imis_thrive.errors import BadConnectionSetting
from include.imis_thrive.imis.tokens import FileTokenStore


@pytest.fixture
def imis_connection(monkeypatch, tmp_path):
    def set_connection(**fields):
        document = {"conn_type": "imis", "host": "https://members.example.org/Asi.Scheduler_Prod",
                    "login": "HL_INTEGRATION", "password": "s3cret-pass",
                    "extra": {"timezone": "America/Chicago", "endpoint": "iqa", "page_size": 250,
                              "token_store_dir": str(tmp_path / "tokens")}}
        document.update(fields)
        monkeypatch.setenv("AIRFLOW_CONN_IMIS_DEFAULT", json.dumps(document))

    return set_connection


def test_connection_becomes_client_config(imis_connection):
    imis_connection()
    config = ImisHook().get_config()
    assert config.base_url == "https://members.example.org/Asi.Scheduler_Prod"
    assert (config.username, config.password.get_secret_value()) == ("HL_INTEGRATION", "s3cret-pass")
    assert (config.timezone, config.endpoint, config.page_size) == ("America/Chicago", "iqa", 250)
    assert "s3cret-pass" not in repr(config)


def test_defaults_when_extras_are_absent(imis_connection):
    imis_connection(extra={}, host="members.example.org")
    config = ImisHook().get_config()
    assert config.base_url == "https://members.example.org"
    assert (config.timezone, config.endpoint, config.page_size) == ("UTC", "query", 500)


def test_client_shares_tokens_through_a_file_store(imis_connection, tmp_path):
    imis_connection()
    client = ImisHook().get_client()
    assert isinstance(client._store, FileTokenStore)
    assert client._store.directory == tmp_path / "tokens"
    client.close()


@pytest.mark.parametrize(("host", "port", "base_url"), [
    ("https://members.example.org/Asi.Scheduler_Prod", 443, "https://members.example.org:443/Asi.Scheduler_Prod"),
    ("members.example.org", 8443, "https://members.example.org:8443"),
    ("http://127.0.0.1:18931", 18931, "http://127.0.0.1:18931"),  # the same port twice is no contradiction
])
def test_the_port_field_goes_into_the_site_url(imis_connection, host, port, base_url):
    imis_connection(host=host, port=port)
    assert ImisHook().get_config().base_url == base_url


def test_a_port_that_contradicts_the_hosts_is_a_setting_error(imis_connection):
    imis_connection(host="https://members.example.org:8443", port=443)
    with pytest.raises(BadConnectionSetting, match=r"imis_default: port is 443 but the host .* names port 8443") as e:
        ImisHook().get_config()
    assert e.value.field == "port"


def test_empty_host_is_a_clear_error(imis_connection):
    imis_connection(host="")
    with pytest.raises(BadConnectionSetting, match="imis_default: host") as raised:
        ImisHook().get_config()
    assert (raised.value.conn_id, raised.value.field) == ("imis_default", "host")


def test_an_invalid_extra_is_a_bad_connection_setting_naming_it(imis_connection, tmp_path):
    imis_connection(extra={"page_size": 900, "token_store_dir": str(tmp_path / "tokens")})
    with pytest.raises(BadConnectionSetting, match=r"connection imis_default: extra page_size is invalid: .*500"):
        ImisHook().get_config()


def test_the_connection_form_is_registered_with_airflow():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert manager.hooks["imis"].hook_class_name == "include.imis_thrive.airflow.hooks.imis.ImisHook"
    assert manager.field_behaviours["imis"]["relabeling"]["host"] == "iMIS site URL"
    assert "port" not in manager.field_behaviours["imis"]["hidden_fields"]  # the Test button needs a port
    assert {"extra__imis__timezone", "extra__imis__endpoint", "extra__imis__page_size"} <= set(
        manager.connection_form_widgets)


def test_token_store_redis_shares_the_token_through_the_url_it_names(imis_connection, monkeypatch):
    from include.imis_thrive.imis.tokens import RedisTokenStore

    imis_connection(extra={"token_store": "redis", "token_store_url": "redis://127.0.0.1:6379/15"})
    store = ImisHook().token_store()
    assert isinstance(store, RedisTokenStore) and store.url == "redis://127.0.0.1:6379/15"


@pytest.mark.parametrize("extra, named", [({"token_store": "redis"}, "token_store_url"),
                                          ({"token_store": "memcached"}, "file or redis")])
def test_a_bad_token_store_setting_names_the_connection_and_the_fix(imis_connection, extra, named):
    imis_connection(extra=extra)
    with pytest.raises(ValueError, match=f"imis_default.*{named}"):
        ImisHook().token_store()
