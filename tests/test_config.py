"""Settings from an injected environment: defaults, validation that names the variable, masked secrets."""

from __future__ import annotations

import pytest

from server.config import Settings
from server.errors import ConfigurationError


def test_defaults_follow_the_contract() -> None:
    settings = Settings.from_env({})
    assert settings.neuroflash_token_url == "https://id.neuroflash.com/oauth/v2/token"
    assert settings.neuroflash_api_url == "https://app.neuroflash.com"
    assert settings.neuralsnap_api_url == "https://neuralsnap.ai/api/v1"
    assert settings.transport == "stdio"
    assert settings.host == "127.0.0.1"
    assert not settings.neuroflash_configured


def test_blank_values_count_as_unset_and_urls_lose_trailing_slashes() -> None:
    settings = Settings.from_env({"NEUROFLASH_CLIENT_ID": "  ", "NEURALSNAP_API_URL": "http://x/api/v1/"})
    assert settings.neuroflash_client_id is None
    assert settings.neuralsnap_api_url == "http://x/api/v1"


def test_secrets_mask_their_own_repr() -> None:
    settings = Settings.from_env(
        {"NEUROFLASH_CLIENT_ID": "id", "NEUROFLASH_CLIENT_SECRET": "s3cr3t-value", "NEURALSNAP_API_KEY": "ns_test_k3y"}
    )
    assert "s3cr3t-value" not in repr(settings)
    assert "ns_test_k3y" not in repr(settings)
    assert settings.neuroflash_configured


def test_a_malformed_key_names_the_variable_but_not_the_value() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"NEURALSNAP_API_KEY": "sk-live-not-neuralsnap"})
    assert "NEURALSNAP_API_KEY" in str(caught.value)
    assert "ns_live_" in str(caught.value)
    assert "sk-live-not-neuralsnap" not in str(caught.value)


def test_numbers_are_validated_with_the_variable_named() -> None:
    with pytest.raises(ConfigurationError, match="FLASHSNAP_MAX_CONCURRENT_GENERATIONS"):
        Settings.from_env({"FLASHSNAP_MAX_CONCURRENT_GENERATIONS": "0"})


@pytest.mark.parametrize(
    ("given", "words"),
    [("", 1000), ("0", 0), ("250", 250), ("1000.0", 1000), (" 5000 ", 5000)],
)
def test_the_confirmation_threshold_reads_what_hosts_send(given: str, words: int) -> None:
    # "1000.0": how a desktop host may render the bundle's number setting.
    assert Settings.from_env({"FLASHSNAP_CONFIRM_WORDS": given}).confirm_words == words


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FLASHSNAP_CONFIRM_WORDS", "-1"),
        ("FLASHSNAP_CONFIRM_WORDS", "1000.5"),
        ("FLASHSNAP_CONFIRM_WORDS", "lots"),
        ("FLASHSNAP_REQUEST_STATE_KEY", "too-short-a-secret"),
    ],
)
def test_asking_settings_are_checked_naming_the_variable_never_the_secret(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=variable) as caught:
        Settings.from_env({variable: value})
    if "KEY" in variable:
        assert value not in str(caught.value)


FLAGS = ["FLASHSNAP_CONFIRM_DELETE", "FLASHSNAP_READ_ONLY", "FLASHSNAP_HTTP_STATELESS"]
TRUE_SPELLINGS = ["1", "true", "True", "TRUE", "yes", "Yes", "on", "ON", " on "]
FALSE_SPELLINGS = ["0", "false", "False", "no", "NO", "off", "Off"]


@pytest.mark.parametrize("variable", FLAGS)
@pytest.mark.parametrize(
    ("given", "value"), [(v, True) for v in TRUE_SPELLINGS] + [(v, False) for v in FALSE_SPELLINGS]
)
def test_every_boolean_setting_reads_the_same_spellings(variable: str, given: str, value: bool) -> None:
    settings = Settings.from_env({variable: given})
    field = {"FLASHSNAP_CONFIRM_DELETE": "confirm_delete", "FLASHSNAP_READ_ONLY": "read_only"}.get(variable)
    assert getattr(settings, field or "http_stateless") is value


@pytest.mark.parametrize("variable", FLAGS)
@pytest.mark.parametrize("given", ["t", "y", "n", "2", "-1", "enabled", "true, true", "ja"])
def test_any_other_spelling_of_a_boolean_setting_stops_the_start_naming_it(variable: str, given: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env({variable: given})
    assert variable in raised.value.message
    assert "1, true, yes or on" in raised.value.message


def test_asking_defaults_ask_before_deleting_and_bound_a_plain_generate() -> None:
    settings = Settings.from_env({})
    assert settings.confirm_delete is True
    assert settings.default_max_tokens == 1024
    for bad in ("0", "-5", "64001", "many"):
        with pytest.raises(ConfigurationError, match="FLASHSNAP_DEFAULT_MAX_TOKENS"):
            Settings.from_env({"FLASHSNAP_DEFAULT_MAX_TOKENS": bad})
    assert Settings.from_env({"FLASHSNAP_DEFAULT_MAX_TOKENS": "512.0"}).default_max_tokens == 512
