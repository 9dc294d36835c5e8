"""The certificates folder: its layout, modes, certificate contents, and clear refusals."""

from __future__ import annotations

import datetime as dt
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from amoskys.bus import certs
from amoskys.cli import main
from amoskys.errors import ConfigError, InputError


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load_cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def usage(cert: x509.Certificate) -> list:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_init_writes_the_layout_with_private_modes(tmp_path):
    folder = tmp_path / "certs"
    written = certs.init(folder, sans=("bus.internal", "10.1.2.3"), agents=("host", "snmp"))
    expected = {"ca.crt", "ca.key", "server.crt", "server.key"} | {
        f"agents/{name}{suffix}" for name in ("host", "snmp") for suffix in (".crt", ".key", ".ed25519", ".ed25519.pub")
    }
    assert {str(p.relative_to(folder)) for p in written} == expected
    assert {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} == expected  # no temporary left
    assert mode(folder) == mode(folder / "agents") == 0o700
    for name in ("ca.key", "server.key", "agents/host.key", "agents/host.ed25519"):
        assert mode(folder / name) == 0o600, name
    assert "PRIVATE KEY" in (folder / "agents/host.ed25519").read_text()
    assert (folder / "agents/host.ed25519.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")


def test_certificates_say_what_they_are_for(tmp_path):
    folder = tmp_path / "certs"
    certs.init(folder, sans=("bus.internal", "10.1.2.3"), agents=("host",))
    ca, server, agent = (load_cert(folder / f) for f in ("ca.crt", "server.crt", "agents/host.crt"))
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for cert in (ca, server, agent):
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp256r1"
    for cert in (server, agent):
        cert.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "bus.internal"}
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.1.2.3"}
    assert agent.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "host"
    assert usage(agent) == [ExtendedKeyUsageOID.CLIENT_AUTH] and usage(server) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_credentials_and_registered_keys_match(tmp_path):
    folder = tmp_path / "certs"
    certs.init(folder, agents=("a",))
    certs.issue_agent(folder, "b")
    creds = certs.load_agent_credentials(folder, "a")
    assert isinstance(creds.signing_key, Ed25519PrivateKey)
    assert creds.ca_pem == (folder / "ca.crt").read_bytes() and b"CERTIFICATE" in creds.cert_pem
    keys = certs.registered_keys(folder)
    assert sorted(keys) == ["a", "b"]
    keys["a"].verify(creds.signing_key.sign(b"payload"), b"payload")  # raises if the pair does not match


def test_issue_agent_with_custom_validity(tmp_path):
    folder = tmp_path / "certs"
    certs.init(folder)
    now = dt.datetime.now(dt.timezone.utc)
    certs.issue_agent(folder, "old", not_before=now - dt.timedelta(days=2), not_after=now - dt.timedelta(days=1))
    assert load_cert(folder / "agents/old.crt").not_valid_after_utc < now


def test_refusals_are_one_clear_line(tmp_path):
    folder = tmp_path / "certs"
    certs.init(folder, agents=("a",))
    ca_before = (folder / "ca.crt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a CA"):
        certs.init(folder)
    assert (folder / "ca.crt").read_bytes() == ca_before
    with pytest.raises(ConfigError, match="already has credentials"):
        certs.issue_agent(folder, "a")
    with pytest.raises(InputError, match="agent name"):
        certs.issue_agent(folder, "../escape")
    with pytest.raises(InputError, match="--san"):
        certs.init(tmp_path / "other", sans=("not a name!",))
    with pytest.raises(ConfigError) as missing:
        certs.load_agent_credentials(folder, "nobody")
    assert "add-agent nobody" in str(missing.value) and "\n" not in str(missing.value)
    with pytest.raises(ConfigError, match="certs init"):
        certs.issue_agent(tmp_path / "empty", "a")


def test_cli_init_and_add_agent(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no amoskys.toml from elsewhere

    def amoskys(*args) -> tuple[int, str]:
        code = main([str(arg) for arg in args])
        out, err = capsys.readouterr()
        return code, out + err

    folder = tmp_path / "c"
    assert amoskys("certs", "init", folder, "--san", "bus.lan", "--agents", "host,flow")[0] == 0
    assert sorted(certs.registered_keys(folder)) == ["flow", "host"]
    code, said = amoskys("certs", "init", folder)
    assert code == 1 and said.count("\n") == 1 and "refusing to overwrite" in said
    assert amoskys("certs", "add-agent", "snmp", "--certs", folder)[0] == 0
    assert sorted(certs.registered_keys(folder)) == ["flow", "host", "snmp"]
    code, said = amoskys("certs", "add-agent", "snmp", "--certs", tmp_path / "none")
    assert code == 1 and said.count("\n") == 1 and "certs init" in said
