"""The broker-connection error says what a bare TLS EOF means when a client certificate is set
(with TLS 1.3 a refused certificate shows as an alert or, depending on timing, as an EOF)."""

from __future__ import annotations

from pathlib import Path

from controllerd.config import MqttSection
from controllerd.mqtt import _tls_hint

EOF_REASON = (
    "Operation timed out (failed to receive on socket: "
    "EOF occurred in violation of protocol (_ssl.c:2427))"
)


def _mqtt(*, client_cert: bool) -> MqttSection:
    pki = Path("/etc/controllerd/tls")
    if not client_cert:
        return MqttSection(host="broker", ca_file=pki / "ca.pem")
    return MqttSection(
        host="broker",
        ca_file=pki / "ca.pem",
        cert_file=pki / "room.pem",
        key_file=pki / "room.key",
    )


def test_a_bare_eof_with_a_client_certificate_points_at_the_certificate() -> None:
    hint = _tls_hint(EOF_REASON, _mqtt(client_cert=True))
    assert "client certificate" in hint and "cert_file" in hint


def test_no_hint_without_a_client_certificate_or_for_other_errors() -> None:
    assert _tls_hint(EOF_REASON, _mqtt(client_cert=False)) == ""
    alert = "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca (_ssl.c:2580)"
    assert _tls_hint(alert, _mqtt(client_cert=True)) == ""
    assert _tls_hint("[Errno 111] Connection refused", _mqtt(client_cert=True)) == ""
