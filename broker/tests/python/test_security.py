"""Security: named listeners (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), TLS with test certificates
made here (the `cryptography` package), SASL PLAIN and SCRAM-SHA-256/512 with credentials managed
through AlterUserScramCredentials, refusals with Kafka's errors, bad input during TLS and SASL, and
ACLs with Kafka's authorizer semantics. Clients: confluent-kafka, kafka-python and kcat."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import struct
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, ConfigResource, NewTopic, ResourcePatternType,
                                   ResourceType, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import wire
from conftest import _free_port
from helpers import unique, wait_until

PLAIN_USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}
CLIENT_CERT_PRINCIPAL = "User:CN=alice-cert,O=fjord"


# ------------------------------------------------------------------------------------------------
# Certificates


def make_certs(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fjord test ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(name: str, cn: str, server: bool) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fjord"),
                             x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (d / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))

    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf("server", "localhost", True)
    leaf("client", "alice-cert", False)


class Secure:
    """A broker with all four listeners; `authorizer` turns ACLs on (User:admin is super user)."""

    def __init__(self, factory, tmp: Path, authorizer: bool):
        self.certs = tmp
        make_certs(tmp)
        self.ports = {p: _free_port() for p in ("SSL", "SASL_PLAINTEXT", "SASL_SSL")}
        listeners = ",".join(f"{p}://127.0.0.1:{port}" for p, port in self.ports.items())
        args = ["--set", f"network.listeners={listeners}",
                "--set", f"tls.cert_file={tmp / 'server.pem'}",
                "--set", f"tls.key_file={tmp / 'server.key'}",
                "--set", f"tls.ca_file={tmp / 'ca.pem'}",
                "--set", "tls.client_auth=requested"]
        for user, password in PLAIN_USERS.items():
            args += ["--set", f"sasl.plain_users.{user}={password}"]
        if authorizer:
            args += ["--set", "authorizer.enabled=true",
                     "--set", 'authorizer.super_users=["User:admin"]']
        self.broker = factory(extra_args=args, name="acl" if authorizer else "secure")

    def addr(self, protocol: str) -> str:
        if protocol == "PLAINTEXT":
            return self.broker.bootstrap
        return f"127.0.0.1:{self.ports[protocol]}"

    def conf(self, protocol: str, mechanism: str | None = None, user: str | None = None,
             password: str | None = None, **extra) -> dict:
        c = {"bootstrap.servers": self.addr(protocol), "security.protocol": protocol}
        if "SSL" in protocol:
            c["ssl.ca.location"] = str(self.certs / "ca.pem")
        if mechanism:
            c.update({"sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password})
        c.update(extra)
        return c

    def admin_conf(self) -> dict:
        return self.conf("SASL_PLAINTEXT", "PLAIN", "admin", PLAIN_USERS["admin"])


@pytest.fixture(scope="module")
def secure(broker_factory, tmp_path_factory):
    return Secure(broker_factory, tmp_path_factory.mktemp("certs"), authorizer=False)


@pytest.fixture(scope="module")
def acl(broker_factory, tmp_path_factory):
    return Secure(broker_factory, tmp_path_factory.mktemp("acl-certs"), authorizer=True)


# ------------------------------------------------------------------------------------------------
# Client helpers

_clients: list[AdminClient] = []


def admin_client(conf: dict) -> AdminClient:
    """An AdminClient kept alive for the module (its futures fail if it is destroyed first)."""
    c = AdminClient(conf)
    _clients.append(c)
    return c


def produce_consume(conf: dict, topic: str, n: int = 5, group: str | None = None) -> list[bytes]:
    """Produces n records and consumes them back with the same security settings."""
    p = Producer({**conf, "linger.ms": 5, "message.timeout.ms": 20000})
    errors = []
    for i in range(n):
        p.produce(topic, f"v{i}".encode(), on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0 and not errors, errors
    c = Consumer({**conf, "group.id": group or unique("g"), "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        wait_until(lambda: (m := c.poll(0.5)) is not None and m.error() is None
                   and got.append(m.value()) is None and len(got) >= n, 30, "records consumed")
        return got
    finally:
        c.close()


def advertised_ports(conf: dict) -> set[int]:
    md = admin_client(conf).list_topics(timeout=15)
    return {b.port for b in md.brokers.values()}


def auth_error(conf: dict) -> KafkaError:
    """The first error a client with `conf` reports when it tries to fetch metadata."""
    errors = []
    a = AdminClient({**conf, "error_cb": errors.append, "log_level": 0})
    with pytest.raises(KafkaException):
        a.list_topics(timeout=5)
    wait_until(lambda: a.poll(0.2) is not None and errors, 10, "an error callback")
    return errors[0]


def scram_upsert(admin_conf: dict, user: str, password: str, mechanism, iterations: int = 4096):
    a = admin_client(admin_conf)
    fs = a.alter_user_scram_credentials([UserScramCredentialUpsertion(
        user, ScramCredentialInfo(mechanism, iterations), password.encode())])
    return fs[user].result(timeout=15)


def sasl_handshake(addr: str, mechanism: str, tls: bool = False, ca: Path | None = None):
    """Raw SaslHandshake v1 on a fresh connection: (socket, error_code, mechanisms)."""
    sock = wire.connect(addr)
    if tls:
        ctx = ssl.create_default_context(cafile=str(ca))
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    sock.sendall(wire.frame(wire.request_header_v1(17, 1, 1) + wire.string(mechanism)))
    _, body = wire.read_response(sock)
    r = wire.Reader(body)
    code = r.i16()
    mechanisms = [r.string() for _ in range(r.i32())]
    return sock, code, mechanisms


def sasl_authenticate(sock, token: bytes, corr: int = 2) -> tuple[int, str | None]:
    """Raw SaslAuthenticate v1: (error_code, error_message)."""
    sock.sendall(wire.frame(wire.request_header_v1(36, 1, corr) + wire.nbytes(token)))
    _, body = wire.read_response(sock)
    r = wire.Reader(body)
    return r.i16(), r.string()


# ------------------------------------------------------------------------------------------------
# Listeners and TLS


def test_each_listener_advertises_itself_and_plaintext_is_unchanged(secure):
    assert advertised_ports({"bootstrap.servers": secure.addr("PLAINTEXT")}) == {secure.broker.port}
    assert advertised_ports(secure.conf("SSL")) == {secure.ports["SSL"]}
    assert advertised_ports(secure.conf("SASL_PLAINTEXT", "PLAIN", "alice", "alice-secret")) == \
        {secure.ports["SASL_PLAINTEXT"]}
    assert advertised_ports(secure.conf("SASL_SSL", "PLAIN", "alice", "alice-secret")) == \
        {secure.ports["SASL_SSL"]}


def test_broker_configs_show_listeners_and_no_secrets(secure):
    res = ConfigResource("broker", "0")
    configs = admin_client(secure.admin_conf()).describe_configs([res])[res].result(15)
    protocols = configs["listener.security.protocol.map"].value
    assert "SASL_SSL:SASL_SSL" in protocols and "PLAINTEXT:PLAINTEXT" in protocols, protocols
    assert f"SSL://127.0.0.1:{secure.ports['SSL']}" in configs["advertised.listeners"].value
    assert configs["sasl.enabled.mechanisms"].value == "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    everything = " ".join(str(c.value) for c in configs.values())
    assert not any(password in everything for password in PLAIN_USERS.values())


def test_ssl_produce_consume_confluent(secure):
    topic = unique("ssl")
    assert produce_consume(secure.conf("SSL"), topic) == [f"v{i}".encode() for i in range(5)]


def test_ssl_with_client_certificate(secure):
    conf = secure.conf("SSL", **{"ssl.certificate.location": str(secure.certs / "client.pem"),
                                 "ssl.key.location": str(secure.certs / "client.key")})
    assert produce_consume(conf, unique("mtls"), 3) == [b"v0", b"v1", b"v2"]


def test_ssl_client_refuses_untrusted_server(secure, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    make_certs(other)
    err = auth_error({**secure.conf("SSL"), "ssl.ca.location": str(other / "ca.pem")})
    assert err.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN), err


def test_tls_certificate_is_reloaded_when_its_files_change(broker_factory, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    make_certs(first)
    make_certs(second)
    live = tmp_path / "live"
    live.mkdir()
    for name in ("server.pem", "server.key"):
        (live / name).write_bytes((first / name).read_bytes())
    port = _free_port()
    broker = broker_factory(name="reload", extra_args=[
        "--set", f"network.listeners=SSL://127.0.0.1:{port}",
        "--set", f"tls.cert_file={live / 'server.pem'}", "--set", f"tls.key_file={live / 'server.key'}"])
    conf = {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SSL"}
    assert advertised_ports({**conf, "ssl.ca.location": str(first / "ca.pem")}) == {port}
    # Rotate (as a Secret update does: new files renamed into place).
    for name in ("server.key", "server.pem"):
        (live / f".{name}.tmp").write_bytes((second / name).read_bytes())
        os.replace(live / f".{name}.tmp", live / name)

    def trusted_by_new_ca():
        try:
            return advertised_ports({**conf, "ssl.ca.location": str(second / "ca.pem"), "log_level": 0}) == {port}
        except KafkaException:
            return False
    wait_until(trusted_by_new_ca, 30, "the rotated certificate served", interval=0.5)
    err = auth_error({**conf, "ssl.ca.location": str(first / "ca.pem")})
    assert err.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN), err
    assert "tls certificate reloaded" in broker.log_text()


# ------------------------------------------------------------------------------------------------
# SASL


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_plain_confluent(secure, protocol):
    conf = secure.conf(protocol, "PLAIN", "alice", "alice-secret")
    assert produce_consume(conf, unique("plain")) == [f"v{i}".encode() for i in range(5)]


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", [ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512])
def test_sasl_scram_confluent(secure, protocol, mechanism):
    user = unique("scram")
    scram_upsert(secure.admin_conf(), user, "pw-" + user, mechanism, iterations=8192)
    name = "SCRAM-SHA-256" if mechanism == ScramMechanism.SCRAM_SHA_256 else "SCRAM-SHA-512"
    conf = secure.conf(protocol, name, user, "pw-" + user)
    assert produce_consume(conf, unique("scram")) == [f"v{i}".encode() for i in range(5)]
    described = admin_client(secure.admin_conf()).describe_user_scram_credentials([user])[user].result(15)
    assert [(i.mechanism, i.iterations) for i in described.scram_credential_infos] == [(mechanism, 8192)]


@pytest.mark.parametrize("mechanism,user,password", [
    ("PLAIN", "alice", "wrong"),
    ("PLAIN", "nobody", "alice-secret"),
    ("SCRAM-SHA-256", "nobody", "x"),
    ("SCRAM-SHA-512", "alice", "alice-secret"),  # a PLAIN user has no SCRAM credential
])
def test_wrong_credentials_are_refused_with_sasl_authentication_failed(secure, mechanism, user, password):
    err = auth_error(secure.conf("SASL_PLAINTEXT", mechanism, user, password))
    assert err.code() == KafkaError._AUTHENTICATION, err
    assert "Authentication failed" in err.str(), err


def test_scram_wrong_password_then_deleted_credential(secure):
    user = unique("scram")
    scram_upsert(secure.admin_conf(), user, "right", ScramMechanism.SCRAM_SHA_256)
    err = auth_error(secure.conf("SASL_SSL", "SCRAM-SHA-256", user, "wrong"))
    assert err.code() == KafkaError._AUTHENTICATION, err
    a = admin_client(secure.admin_conf())
    a.alter_user_scram_credentials([UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_256)])[user].result(15)
    err = auth_error(secure.conf("SASL_SSL", "SCRAM-SHA-256", user, "right"))
    assert err.code() == KafkaError._AUTHENTICATION, err


def test_raw_sasl_errors_and_connection_closed(secure):
    addr = secure.addr("SASL_PLAINTEXT")
    # Unknown mechanism: UNSUPPORTED_SASL_MECHANISM (33) with the enabled ones listed.
    sock, code, mechanisms = sasl_handshake(addr, "GSSAPI")
    assert code == 33 and set(mechanisms) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
    sock.close()
    # Wrong PLAIN password: SASL_AUTHENTICATION_FAILED (58), then the connection is closed.
    sock, code, _ = sasl_handshake(addr, "PLAIN")
    assert code == 0
    code, message = sasl_authenticate(sock, b"\0alice\0nope")
    assert code == 58 and "Authentication failed" in message
    assert wire.wait_closed(sock, 10) in ("eof", "reset")
    # The right one works on a new connection, and then requests are served.
    sock, code, _ = sasl_handshake(addr, "PLAIN")
    assert sasl_authenticate(sock, b"\0alice\0alice-secret")[0] == 0
    sock.sendall(wire.api_versions_v0_request(3))
    assert wire.read_response(sock)[0] == 3
    sock.close()


def scram_client_final(mechanism: str, password: str, client_first_bare: str, server_first: str) -> bytes:
    """RFC 5802 client-final for `password` (computed here, independently of any client library)."""
    import base64
    import hashlib
    import hmac
    algo = hashlib.sha256 if mechanism == "SCRAM-SHA-256" else hashlib.sha512
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(algo().name, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", algo).digest()
    stored_key = algo(client_key).digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, algo).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_raw_scram_exchange_checks_the_proof(secure, mechanism):
    user = unique("raw")
    scram_upsert(secure.admin_conf(), user, "raw-pw",
                 ScramMechanism.SCRAM_SHA_256 if mechanism == "SCRAM-SHA-256" else ScramMechanism.SCRAM_SHA_512)
    for password, expected in (("not-it", 58), ("raw-pw", 0)):
        bare = f"n={user},r=fjordtestnonce"
        sock, code, _ = sasl_handshake(secure.addr("SASL_PLAINTEXT"), mechanism)
        assert code == 0
        # SaslAuthenticate v1 response: error_code, error_message, auth_bytes (server-first).
        sock.sendall(wire.frame(wire.request_header_v1(36, 1, 2) + wire.nbytes(f"n,,{bare}".encode())))
        _, body = wire.read_response(sock)
        r = wire.Reader(body)
        assert r.i16() == 0
        r.string()
        server_first = r.nbytes().decode()
        assert server_first.startswith("r=fjordtestnonce")
        code, _ = sasl_authenticate(sock, scram_client_final(mechanism, password, bare, server_first), corr=3)
        assert code == expected, password
        if expected:
            assert wire.wait_closed(sock, 10) in ("eof", "reset")
        sock.close()


def test_request_before_authentication_closes_the_connection(secure):
    for protocol in ("SASL_PLAINTEXT",):
        sock = wire.connect(secure.addr(protocol))
        # ApiVersions is allowed before authentication ...
        sock.sendall(wire.api_versions_v0_request(1))
        assert wire.read_response(sock)[0] == 1
        # ... a produce is not.
        batch = wire.record_batch([(None, b"sneaky")], 0)
        sock.sendall(wire.produce_v3_request(2, "sneaky", 0, batch))
        assert wire.wait_closed(sock, 10) in ("eof", "reset")
    assert "sneaky" not in admin_client(secure.admin_conf()).list_topics(timeout=10).topics


def test_sasl_and_tls_garbage_do_not_hurt_the_broker(secure):
    import random
    rng = random.Random(15)
    addr = secure.addr("SASL_PLAINTEXT")
    tokens = [b"", b"\0", b"\0\0\0\0", bytes(rng.getrandbits(8) for _ in range(300)), b"n,,n=,r=",
              b"n,,n=alice,r=x", b"p=tls-unique,,n=a,r=b", b"\xff" * 70000]
    for mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        for token in tokens:
            sock, code, _ = sasl_handshake(addr, mechanism)
            assert code == 0
            try:
                code, _ = sasl_authenticate(sock, token)
                if mechanism != "PLAIN" and token == b"n,,n=alice,r=x":
                    assert code == 58  # alice has no SCRAM credential
                else:
                    assert code in (58, 0) if mechanism != "PLAIN" else code == 58
            except wire.ConnectionClosed:
                pass
            sock.close()
    # SaslAuthenticate without a handshake: ILLEGAL_SASL_STATE (34), then closed.
    sock = wire.connect(addr)
    code, _ = sasl_authenticate(sock, b"\0alice\0alice-secret")
    assert code == 34
    assert wire.wait_closed(sock, 10) in ("eof", "reset")
    # Raw garbage on the SASL listener and on the TLS listeners.
    for protocol in ("SASL_PLAINTEXT", "SSL", "SASL_SSL"):
        for junk in (b"\x16\x03\x01\x00\x05hello", bytes(rng.getrandbits(8) for _ in range(4096)),
                     b"GET / HTTP/1.1\r\n\r\n", wire.api_versions_v0_request(1)):
            s = wire.connect(secure.addr(protocol))
            try:
                s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                wire.wait_closed(s, 15)
            except (ConnectionResetError, BrokenPipeError):
                pass
            finally:
                s.close()
    # Still serving on every listener.
    assert secure.broker.alive()
    assert advertised_ports(secure.conf("SASL_SSL", "PLAIN", "alice", "alice-secret")) == \
        {secure.ports["SASL_SSL"]}
    assert advertised_ports(secure.conf("SSL")) == {secure.ports["SSL"]}


def test_scram_admin_api_errors(secure):
    a = admin_client(secure.admin_conf())
    user = unique("nobody")
    with pytest.raises(KafkaException) as e:
        a.describe_user_scram_credentials([user])[user].result(15)
    assert e.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND
    with pytest.raises(KafkaException) as e:
        a.alter_user_scram_credentials([UserScramCredentialUpsertion(
            user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 10), b"pw")])[user].result(15)
    assert e.value.args[0].code() == KafkaError.UNACCEPTABLE_CREDENTIAL
    with pytest.raises(KafkaException) as e:
        a.alter_user_scram_credentials([UserScramCredentialDeletion(
            user, ScramMechanism.SCRAM_SHA_512)])[user].result(15)
    assert e.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND


def test_scram_credentials_are_salted_and_survive_restart(secure):
    user = unique("durable")
    password = "correct-horse-" + user
    scram_upsert(secure.admin_conf(), user, password, ScramMechanism.SCRAM_SHA_512)
    secure.broker.restart()
    conf = secure.conf("SASL_SSL", "SCRAM-SHA-512", user, password)
    assert produce_consume(conf, unique("durable"), 2) == [b"v0", b"v1"]
    # The password never reaches the broker's disk.
    for path in secure.broker.data_dir.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


def test_kafka_python_ssl_and_sasl(secure):
    from kafka import KafkaConsumer, KafkaProducer
    user = unique("kp")
    scram_upsert(secure.admin_conf(), user, "kp-pw", ScramMechanism.SCRAM_SHA_512)
    cases = [
        dict(security_protocol="SSL", bootstrap_servers=secure.addr("SSL")),
        dict(security_protocol="SASL_PLAINTEXT", bootstrap_servers=secure.addr("SASL_PLAINTEXT"),
             sasl_mechanism="PLAIN", sasl_plain_username="alice", sasl_plain_password="alice-secret"),
        dict(security_protocol="SASL_SSL", bootstrap_servers=secure.addr("SASL_SSL"),
             sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=user, sasl_plain_password="kp-pw"),
    ]
    for conf in cases:
        if "SSL" in conf["security_protocol"]:
            conf["ssl_cafile"] = str(secure.certs / "ca.pem")
        topic = unique("kp")
        producer = KafkaProducer(acks="all", **conf)
        try:
            for i in range(3):
                producer.send(topic, f"kp{i}".encode()).get(timeout=30)
        finally:
            producer.close()
        consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=15000,
                                 group_id=unique("kpg"), **conf)
        try:
            got = [m.value for m in consumer][:3]
        finally:
            consumer.close()
        assert got == [b"kp0", b"kp1", b"kp2"], conf["security_protocol"]


def test_kafka_python_wrong_password_refused(secure):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as KpError
    with pytest.raises(KpError):
        KafkaProducer(bootstrap_servers=secure.addr("SASL_PLAINTEXT"), security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism="PLAIN", sasl_plain_username="alice", sasl_plain_password="wrong",
                      max_block_ms=5000).close()


def kcat(*args, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    exe = shutil.which("kcat")
    if exe is None:
        pytest.fail("kcat is not installed", pytrace=False)
    r = subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, timeout=60)
    if ok:
        assert r.returncode == 0, f"kcat {' '.join(args)}: {r.returncode}\n{r.stderr}"
    return r


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_kcat_sasl_ssl(secure, mechanism):
    if mechanism == "PLAIN":
        user, password = "bob", "bob-secret"
    else:
        user, password = unique("kcat"), "kcat-pw"
        scram_upsert(secure.admin_conf(), user, password, ScramMechanism.SCRAM_SHA_256)
    sec = ["-X", "security.protocol=SASL_SSL", "-X", f"sasl.mechanisms={mechanism}",
           "-X", f"sasl.username={user}", "-X", f"sasl.password={password}",
           "-X", f"ssl.ca.location={secure.certs / 'ca.pem'}"]
    topic = unique("kcat")
    addr = secure.addr("SASL_SSL")
    kcat("-b", addr, *sec, "-P", "-t", topic, stdin="one\ntwo\n")
    out = kcat("-b", addr, *sec, "-C", "-t", topic, "-e", "-o", "beginning", "-q").stdout
    assert out.splitlines() == ["one", "two"]
    listing = kcat("-b", addr, *sec, "-L").stdout
    assert f"127.0.0.1:{secure.ports['SASL_SSL']}" in listing
    bad = [a if not a.startswith("sasl.password=") else "sasl.password=wrong" for a in sec]
    r = kcat("-b", addr, *bad, "-L", "-m", "5", ok=False)
    assert r.returncode != 0 and "Authentication failed" in r.stderr, r.stderr


# ------------------------------------------------------------------------------------------------
# ACLs


def create_acls(admin_conf: dict, bindings: list[AclBinding]) -> None:
    fs = admin_client(admin_conf).create_acls(bindings)
    for f in fs.values():
        f.result(15)


def allow(principal: str, rt, name: str, op, pattern=ResourcePatternType.LITERAL,
          permission=AclPermissionType.ALLOW) -> AclBinding:
    return AclBinding(rt, name, pattern, principal, "*", op, permission)


def user_conf(acl: Secure, user: str, **extra) -> dict:
    return acl.conf("SASL_PLAINTEXT", "PLAIN", user, PLAIN_USERS[user], **extra)


def delivery_error(conf: dict, topic: str) -> KafkaError | None:
    errors = []
    p = Producer({**conf, "message.timeout.ms": 8000, "log_level": 0})
    p.produce(topic, b"x", on_delivery=lambda e, m: errors.append(e))
    p.flush(15)
    return errors[0] if errors else "no delivery report"


def test_acl_matrix(acl):
    admin_conf = acl.admin_conf()
    a = admin_client(admin_conf)
    base = unique("acl")
    orders, payments, secret = f"{base}-orders", f"{base}-pay-1", f"{base}-pay-secret"
    for t in (orders, payments, secret):
        a.create_topics([NewTopic(t, 1, 1)])[t].result(15)
    group = f"{base}-group"
    create_acls(admin_conf, [
        allow("User:alice", ResourceType.TOPIC, orders, AclOperation.WRITE),
        allow("User:alice", ResourceType.TOPIC, orders, AclOperation.READ),
        allow("User:alice", ResourceType.GROUP, group, AclOperation.READ),
        allow("User:alice", ResourceType.TOPIC, f"{base}-pay-", AclOperation.ALL, ResourcePatternType.PREFIXED),
        allow("User:alice", ResourceType.TOPIC, secret, AclOperation.WRITE, permission=AclPermissionType.DENY),
        allow("User:bob", ResourceType.TOPIC, orders, AclOperation.DESCRIBE),
    ])
    alice, bob = user_conf(acl, "alice"), user_conf(acl, "bob")

    # Produce: literal allow, prefixed allow, deny wins over the prefixed ALL, no ACL.
    assert delivery_error(alice, orders) is None
    assert delivery_error(alice, payments) is None
    assert delivery_error(alice, secret).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert delivery_error(bob, orders).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # Consume with a group: alice may, bob may not (no group ACL), alice may not use another group.
    assert produce_consume(alice, orders, 2, group=group)[:1] == [b"x"]
    c = Consumer({**bob, "group.id": group, "auto.offset.reset": "earliest", "log_level": 0})
    try:
        c.subscribe([orders])
        err = wait_until(lambda: (m := c.poll(0.5)) is not None and m.error(), 20, "a consume error")
        assert err.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED), err
    finally:
        c.close()
    c = Consumer({**alice, "group.id": f"{base}-other", "auto.offset.reset": "earliest", "log_level": 0})
    try:
        c.subscribe([orders])
        err = wait_until(lambda: (m := c.poll(0.5)) is not None and m.error(), 20, "a group error")
        assert err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, err
    finally:
        c.close()

    # Metadata: alice sees her topics only, bob sees orders (DESCRIBE) only.
    seen = set(admin_client(alice).list_topics(timeout=10).topics)
    assert {orders, payments, secret} <= seen  # the prefixed ALL covers pay-secret's DESCRIBE
    seen_bob = {t for t in admin_client(bob).list_topics(timeout=10).topics if t.startswith(base)}
    assert seen_bob == {orders}

    # Create / delete / configs.
    fs = admin_client(bob).create_topics([NewTopic(f"{base}-new", 1, 1)])
    with pytest.raises(KafkaException) as e:
        fs[f"{base}-new"].result(15)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    fs = admin_client(alice).create_topics([NewTopic(f"{base}-pay-2", 1, 1)])
    fs[f"{base}-pay-2"].result(15)  # prefixed ALL includes CREATE
    with pytest.raises(KafkaException) as e:
        admin_client(bob).delete_topics([orders])[orders].result(15)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    fs = admin_client(bob).delete_records([TopicPartition(orders, 0, 1)])
    with pytest.raises(KafkaException) as e:
        list(fs.values())[0].result(15)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as e:
        admin_client(bob).describe_configs([ConfigResource("topic", orders)])[
            ConfigResource("topic", orders)].result(15)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    admin_client(alice).describe_configs([ConfigResource("topic", payments)])[
        ConfigResource("topic", payments)].result(15)
    # Auto-creation through Metadata/Produce needs CREATE: bob gets an authorization error.
    assert delivery_error(bob, f"{base}-auto").code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._UNKNOWN_TOPIC, KafkaError._MSG_TIMED_OUT)
    assert f"{base}-auto" not in a.list_topics(timeout=10).topics

    # ACL APIs need cluster ALTER/DESCRIBE: alice is refused, admin (super user) describes them.
    # (confluent-kafka drops DescribeAcls' top-level error, so kafka-python checks that one.)
    fs = admin_client(alice).create_acls([allow("User:alice", ResourceType.TOPIC, "*", AclOperation.ALL)])
    with pytest.raises(KafkaException) as e:
        list(fs.values())[0].result(15)
    assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             KafkaAdminClient, ResourcePatternFilter)
    from kafka.admin import ResourceType as KpResourceType
    from kafka.errors import ClusterAuthorizationFailedError
    kp = KafkaAdminClient(bootstrap_servers=acl.addr("SASL_PLAINTEXT"), security_protocol="SASL_PLAINTEXT",
                          sasl_mechanism="PLAIN", sasl_plain_username="alice",
                          sasl_plain_password=PLAIN_USERS["alice"])
    try:
        with pytest.raises(ClusterAuthorizationFailedError):
            kp.describe_acls(ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                                       permission_type=ACLPermissionType.ANY,
                                       resource_pattern=ResourcePatternFilter(
                                           KpResourceType.ANY, None, ACLResourcePatternType.ANY)))
    finally:
        kp.close()
    described = a.describe_acls(AclBindingFilter(
        ResourceType.TOPIC, None, ResourcePatternType.ANY, "User:alice", None, AclOperation.ANY,
        AclPermissionType.ANY)).result(15)
    assert len([b for b in described if b.name.startswith(base)]) == 4  # the group ACL is not a TOPIC one

    # Deleting the deny lets alice write the secret topic.
    deleted = a.delete_acls([AclBindingFilter(
        ResourceType.TOPIC, secret, ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.WRITE,
        AclPermissionType.DENY)])
    assert len(list(deleted.values())[0].result(15)) == 1
    wait_until(lambda: delivery_error(alice, secret) is None, 20, "write allowed after the deny is gone")


def test_acl_anonymous_and_mtls_principal(acl):
    topic = unique("mtls")
    admin_client(acl.admin_conf()).create_topics([NewTopic(topic, 1, 1)])[topic].result(15)
    create_acls(acl.admin_conf(), [allow(CLIENT_CERT_PRINCIPAL, ResourceType.TOPIC, topic, AclOperation.WRITE)])
    with_cert = acl.conf("SSL", **{"ssl.certificate.location": str(acl.certs / "client.pem"),
                                   "ssl.key.location": str(acl.certs / "client.key")})
    assert delivery_error(with_cert, topic) is None
    # Without a certificate the SSL principal is User:ANONYMOUS, and so is PLAINTEXT's.
    assert delivery_error(acl.conf("SSL"), topic).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert delivery_error({"bootstrap.servers": acl.addr("PLAINTEXT")}, topic).code() == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert topic not in admin_client({"bootstrap.servers": acl.addr("PLAINTEXT")}).list_topics(timeout=10).topics


def test_acl_super_user_and_acls_survive_restart(acl):
    topic = unique("durable-acl")
    admin_client(acl.admin_conf()).create_topics([NewTopic(topic, 1, 1)])[topic].result(15)
    create_acls(acl.admin_conf(), [allow("User:bob", ResourceType.TOPIC, topic, AclOperation.WRITE)])
    acl.broker.restart()
    assert delivery_error(user_conf(acl, "bob"), topic) is None
    assert delivery_error(acl.admin_conf(), topic) is None  # super user without any ACL
    assert delivery_error(user_conf(acl, "alice"), topic).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_acl_apis_refused_without_authorizer(secure):
    fs = admin_client(secure.admin_conf()).create_acls(
        [allow("User:alice", ResourceType.TOPIC, "t", AclOperation.READ)])
    with pytest.raises(KafkaException) as e:
        list(fs.values())[0].result(15)
    assert e.value.args[0].code() == KafkaError.SECURITY_DISABLED
