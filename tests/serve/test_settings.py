"""``serve``'s own settings: rotating webhook secrets and the top-up token, never shown."""

from __future__ import annotations

import pytest

from reconcile.config import Secret, serve_settings
from reconcile.errors import ConfigError


def test_secrets_are_split_for_rotation_and_hidden() -> None:
    settings = serve_settings(
        {"STRIPE_WEBHOOK_SECRET": " whsec_a, whsec_b ,", "RECONCILE_TOPUP_TOKEN": "tok"}
    )
    assert settings.webhook_secrets == (Secret("whsec_a"), Secret("whsec_b"))
    assert settings.topup_token == Secret("tok")
    assert "whsec_a" not in repr(settings)
    assert "'tok'" not in repr(settings)
    assert set(settings.secret_values()) == {"whsec_a", "whsec_b", "tok"}


def test_unset_values_are_empty() -> None:
    settings = serve_settings({})
    assert settings.webhook_secrets == ()
    assert settings.topup_token is None


@pytest.mark.parametrize(
    "environ",
    [{"RECONCILE_TOPUP_TOKEN": "Bearer s3cr3t"}, {"STRIPE_WEBHOOK_SECRET": "whsec_s3cr3t x"}],
)
def test_malformed_values_are_refused_without_showing_them(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as raised:
        serve_settings(environ)
    assert "s3cr3t" not in str(raised.value)
