"""The daemon's MQTT session against a locked-down broker: TLS with a private CA, client
certificates required, no anonymous access, a password file.

Certificates are made here with `cryptography`; the broker is a private Mosquitto with its own
config; the password file is written by `mosquitto_passwd` (from the Debian package).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controllerd.broker import free_port
from controllerd.config import parse_config
from controllerd.mqtt import MqttConnection
from controllerd.topics import Topics

pytestmark = pytest.mark.system

SITE, ROOM = "tls-site", "room-9"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None = None,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@dataclass
class Pki:
    ca: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path


@dataclass
class SecureBroker:
    port: int
    pki: Pki
    password_file: Path


def _make_pki(d: Path) -> tuple[Pki, Path, Path]:
    ca_key = _key()
    ca = _cert("controllerd test CA", ca_key)
    server_key = _key()
    server = _cert("127.0.0.1", server_key, issuer=("controllerd test CA", ca_key), server=True)
    client_key = _key()
    client = _cert("room-9", client_key, issuer=("controllerd test CA", ca_key))
    # Signed by a CA the broker does not trust.
    other_ca_key = _key()
    stranger_key = _key()
    stranger = _cert("stranger", stranger_key, issuer=("another CA", other_ca_key))
    pki = Pki(
        ca=_write_cert(ca, d / "ca.pem"),
        client_cert=_write_cert(client, d / "client.pem"),
        client_key=_write_key(client_key, d / "client.key"),
        stranger_cert=_write_cert(stranger, d / "stranger.pem"),
        stranger_key=_write_key(stranger_key, d / "stranger.key"),
    )
    return pki, _write_cert(server, d / "server.pem"), _write_key(server_key, d / "server.key")


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    passwd_tool = shutil.which("mosquitto_passwd")
    assert passwd_tool, "mosquitto_passwd comes with the mosquitto Debian package"
    d = tmp_path_factory.mktemp("tls")
    pki, server_cert, server_key = _make_pki(d)
    passwd = d / "passwd"
    subprocess.run(
        [passwd_tool, "-b", "-c", str(passwd), "controller", "s3cret-room-9"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    conf = d / "mosquitto.conf"
    conf.write_text(
        f"per_listener_settings true\nlistener {port} 127.0.0.1\n"
        f"cafile {pki.ca}\ncertfile {server_cert}\nkeyfile {server_key}\n"
        "require_certificate true\nallow_anonymous false\n"
        f"password_file {passwd}\n" + ("user root\n" if os.geteuid() == 0 else "")
    )
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield SecureBroker(port=port, pki=pki, password_file=passwd)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _connection(
    tmp_path: Path, broker: SecureBroker, *, password: str, stranger: bool = False
) -> tuple[MqttConnection, Topics, Path]:
    pw = tmp_path / "mqtt-password"
    pw.write_text(password + "\n")
    pki = broker.pki
    config = parse_config(
        {
            "controller": {"site": SITE, "id": ROOM, "state_dir": str(tmp_path / "state")},
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "username": "controller",
                "password_file": str(pw),
                "ca_file": str(pki.ca),
                "cert_file": str(pki.stranger_cert if stranger else pki.client_cert),
                "key_file": str(pki.stranger_key if stranger else pki.client_key),
                "reconnect_initial_s": 0.1,
                "reconnect_max_s": 0.3,
                "connect_timeout_s": 2.0,
            },
        }
    )
    topics = Topics(prefix="biobank", site=SITE, controller=ROOM)
    return MqttConnection(config=config, topics=topics), topics, pw


def _observer(broker: SecureBroker) -> aiomqtt.Client:
    tls = ssl.create_default_context(cafile=str(broker.pki.ca))
    tls.load_cert_chain(str(broker.pki.client_cert), str(broker.pki.client_key))
    return aiomqtt.Client(
        "127.0.0.1",
        port=broker.port,
        username="controller",
        password="s3cret-room-9",
        tls_context=tls,
        protocol=aiomqtt.ProtocolVersion.V5,
    )


async def _failures_reach(mqtt: MqttConnection, n: int) -> None:
    async with asyncio.timeout(60):
        while mqtt.failures < n:  # noqa: ASYNC110 (a counter, no event to wait on)
            await asyncio.sleep(0.05)


async def test_tls_client_certificate_and_password(
    tmp_path: Path, secure_broker: SecureBroker
) -> None:
    mqtt, topics, _ = _connection(tmp_path, secure_broker, password="s3cret-room-9")
    async with mqtt:
        await asyncio.wait_for(mqtt.wait_connected(), 30)
        async with _observer(secure_broker) as observer:
            await observer.subscribe(topics.status, qos=1)
            async with asyncio.timeout(30):
                async for message in observer.messages:
                    assert isinstance(message.payload, bytes)
                    assert b'"online"' in message.payload
                    break


async def test_wrong_password_is_refused_then_a_fixed_file_is_read_again(
    tmp_path: Path, secure_broker: SecureBroker
) -> None:
    mqtt, _, pw = _connection(tmp_path, secure_broker, password="wrong")
    async with mqtt:
        await _failures_reach(mqtt, 2)
        assert not mqtt.connected
        assert mqtt.last_error is not None and "authoriz" in mqtt.last_error.lower(), (
            mqtt.last_error
        )
        # The engineer fixes the file; the daemon reads it again at its next attempt.
        pw.write_text("s3cret-room-9\n")
        await asyncio.wait_for(mqtt.wait_connected(), 30)


async def test_a_certificate_from_another_ca_is_refused(
    tmp_path: Path, secure_broker: SecureBroker
) -> None:
    mqtt, _, _ = _connection(tmp_path, secure_broker, password="s3cret-room-9", stranger=True)
    async with mqtt:
        await _failures_reach(mqtt, 1)
        assert not mqtt.connected
        assert mqtt.last_error is not None
        assert any(w in mqtt.last_error.lower() for w in ("unknown ca", "certificate")), (
            mqtt.last_error
        )
