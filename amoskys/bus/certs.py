"""The bus's small private PKI: a CA, the bus's server certificate, and per-agent credentials.

Layout of a certificates folder (other components rely on it exactly)::

    DIR/ca.crt  DIR/ca.key                  the CA (ECDSA P-256), refuses to be overwritten
    DIR/server.crt  DIR/server.key          the bus (SAN: IP 127.0.0.1, DNS localhost, --san names)
    DIR/agents/NAME.crt  NAME.key           the agent's TLS client certificate (CN=NAME, clientAuth)
    DIR/agents/NAME.ed25519(.pub)           the agent's envelope signing key pair (PEM, PKCS8 / SPKI)

Two keys per agent on purpose: TLS proves who is connected, the Ed25519 signature proves
who made a batch, and survives in the store next to it. Private key files are 0600 and
folders 0700; every file is written to a temporary name and renamed, so a crash never
leaves half a key behind.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from amoskys.errors import ConfigError, InputError

CA_DAYS = 3650
SERVER_DAYS = 825
AGENT_DAYS = 365
CLOCK_SLACK = dt.timedelta(minutes=5)  # not_before a little in the past, for hosts whose clock runs behind
SERVER_CN = "amoskys-bus"
AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
KEY_MODE, DIR_MODE = 0o600, 0o700


@dataclass(frozen=True)
class AgentCredentials:
    """What an agent needs to talk to the bus: TLS material (PEM bytes) and its signing key."""

    name: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    signing_key: Ed25519PrivateKey


@dataclass(frozen=True)
class ServerCredentials:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def init(certs_dir: Path, sans: tuple[str, ...] = (), agents: tuple[str, ...] = ()) -> list[Path]:
    """Create a CA, the bus's server certificate and the named agents; return the files written.

    Refuses (ConfigError) when certs_dir already holds a CA: a new CA would silently
    lock out every agent issued by the old one.
    """
    certs_dir = Path(certs_dir)
    for name in agents:
        check_agent_name(name)
    sans_parsed = [_san(name) for name in sans]
    if (certs_dir / "ca.key").exists() or (certs_dir / "ca.crt").exists():
        raise ConfigError(f"{certs_dir} already holds a CA; refusing to overwrite it "
                          "(use another folder, or add agents with `amoskys certs add-agent`)")  # fmt: skip
    _make_private_dir(certs_dir)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AMOSKYS bus CA")])
    now = _now()
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now - CLOCK_SLACK, now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    written = [_write_key(certs_dir / "ca.key", ca_key), _write_cert(certs_dir / "ca.crt", ca_cert)]
    server_key = ec.generate_private_key(ec.SECP256R1())
    alt_names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"), *sans_parsed]
    server_validity = (now - CLOCK_SLACK, now + dt.timedelta(days=SERVER_DAYS))
    server_cert = (
        _builder(_cn(SERVER_CN), ca_cert.subject, server_key.public_key(), *server_validity)
        .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(alt_names))), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    written += [_write_key(certs_dir / "server.key", server_key), _write_cert(certs_dir / "server.crt", server_cert)]
    for name in agents:
        written += issue_agent(certs_dir, name)
    return written


def issue_agent(
    certs_dir: Path, name: str, not_before: dt.datetime | None = None, not_after: dt.datetime | None = None
) -> list[Path]:
    """Issue agent name's TLS client certificate and Ed25519 signing key pair; return the files written.

    not_before / not_after default to now - 5 min / now + 365 days (tests pass a past
    not_after for an expired certificate). Refuses to overwrite an agent's files.
    """
    certs_dir = Path(certs_dir)
    check_agent_name(name)
    ca_cert, ca_key = _load_ca(certs_dir)
    agents_dir = certs_dir / "agents"
    paths = agent_paths(certs_dir, name)
    if any(path.exists() for path in paths.values()):
        raise ConfigError(f"agent {name!r} already has credentials in {agents_dir}; remove its files first to reissue")
    _make_private_dir(agents_dir)
    now = _now()
    not_before = now - CLOCK_SLACK if not_before is None else not_before
    not_after = now + dt.timedelta(days=AGENT_DAYS) if not_after is None else not_after
    tls_key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_cn(name), ca_cert.subject, tls_key.public_key(), not_before, not_after)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    signing_key = Ed25519PrivateKey.generate()
    public_pem = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The public key last: the bus treats an agent as registered once its .pub exists.
    return [
        _write_key(paths["key"], tls_key),
        _write_cert(paths["cert"], cert),
        _write_key(paths["signing_key"], signing_key),
        _write_file(paths["public_key"], public_pem, 0o644),
    ]


def agent_paths(certs_dir: Path, name: str) -> dict[str, Path]:
    base = Path(certs_dir) / "agents"
    return {"cert": base / f"{name}.crt", "key": base / f"{name}.key",
            "signing_key": base / f"{name}.ed25519", "public_key": base / f"{name}.ed25519.pub"}  # fmt: skip


def load_agent_credentials(certs_dir: Path, name: str) -> AgentCredentials:
    """Agent name's credentials from certs_dir; ConfigError (one line, with the fix) if any file is missing."""
    certs_dir = Path(certs_dir)
    paths = agent_paths(certs_dir, name)
    fix = f"create them with `amoskys certs add-agent {name} --certs {certs_dir}`"
    ca_pem = _read(certs_dir / "ca.crt", f"no CA in {certs_dir}: run `amoskys certs init {certs_dir}`")
    cert_pem, key_pem, signing_pem = (
        _read(paths[kind], f"no credentials for agent {name!r}: {paths[kind]} is missing; {fix}")
        for kind in ("cert", "key", "signing_key")
    )
    signing_key = _load_private(signing_pem, paths["signing_key"])
    if not isinstance(signing_key, Ed25519PrivateKey):
        raise ConfigError(f"{paths['signing_key']} is not an Ed25519 private key")
    return AgentCredentials(name, ca_pem, cert_pem, key_pem, signing_key)


def load_server_credentials(certs_dir: Path) -> ServerCredentials:
    certs_dir = Path(certs_dir)
    fix = f"create them with `amoskys certs init {certs_dir}`"
    ca, cert, key = (_read(certs_dir / f, f"no bus certificates: {certs_dir / f} is missing; {fix}")
                     for f in ("ca.crt", "server.crt", "server.key"))  # fmt: skip
    return ServerCredentials(ca, cert, key)


def registered_keys(certs_dir: Path) -> dict[str, Ed25519PublicKey]:
    """Every agent's Ed25519 public key, by agent name, from DIR/agents/*.ed25519.pub."""
    keys = {}
    for path in sorted((Path(certs_dir) / "agents").glob("*.ed25519.pub")):
        name = path.name.removesuffix(".ed25519.pub")
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read agent key {path}: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"agent key {path} is not an Ed25519 public key")
        keys[name] = key
    return keys


def check_agent_name(name: str) -> str:
    """Agent names become file names and certificate CNs: letters, digits, '.', '_', '-' (1-64)."""
    if not AGENT_NAME.fullmatch(name):
        raise InputError(
            f"agent name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


# -- helpers ---------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _cn(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def _builder(subject, issuer, public_key, not_before, not_after) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _key_usage(cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not re.fullmatch(r"[A-Za-z0-9*]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", name):
        raise InputError(f"--san {name!r} is neither an IP address nor a DNS name")
    return x509.DNSName(name)


def _load_ca(certs_dir: Path):
    cert_pem = _read(certs_dir / "ca.crt", f"no CA in {certs_dir}: run `amoskys certs init {certs_dir}` first")
    key_pem = _read(certs_dir / "ca.key", f"no CA key in {certs_dir}: agents are issued where the CA key is")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ConfigError(f"{certs_dir / 'ca.crt'} is not a PEM certificate: {exc}") from None
    return cert, _load_private(key_pem, certs_dir / "ca.key")


def _load_private(pem: bytes, path: Path):
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not an unencrypted PEM private key: {exc}") from None


def _read(path: Path, missing: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(missing) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _make_private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        path.chmod(DIR_MODE)
    except OSError as exc:
        raise ConfigError(f"cannot create certificates folder {path}: {exc.strerror}") from None


def _write_key(path: Path, key) -> Path:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return _write_file(path, pem, KEY_MODE)


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    return _write_file(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_file(path: Path, data: bytes, mode: int) -> Path:
    """Write data to path with mode from the first byte on (never readable by others), then rename into place."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.unlink(missing_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)  # the umask may have taken bits off
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    return path
