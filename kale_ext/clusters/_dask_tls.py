"""TLS credentials of a Dask cluster: a private CA and one certificate it signed.

The files live in the cluster's private registry folder (0700, files 0600), so any
process of the same user, and the workers of its batch jobs (the state directory is
on the shared home on real sites), can connect by reading them; nothing without
them can. The scheduler's dashboard asks for the same certificate: it serves HTTPS
only to a client holding the files (the owner's Jupyter server proxies it to the
owner's browser, kale_ext.server), and listens on one address, never on all.
"""

from __future__ import annotations

import datetime
import os
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kale_ext import registry

CA_FILE = "ca.pem"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def create_credentials(folder: Path, *, days: int = 365, ips: Sequence[str] = (),
                       names: Sequence[str] = ()) -> Path:
    """Write ``ca.pem``, ``cert.pem`` and ``key.pem`` into ``folder``; return it.

    Every role (scheduler, worker, client) uses the one leaf certificate: what is
    authenticated is possession of the files, i.e. being the user who owns them.

    Parameters
    ----------
    folder
        The cluster's private folder.
    days
        How long the certificates are valid.
    ips, names
        The IP addresses and DNS names the certificate is issued for (its subject
        alternative names): the scheduler's address that workers dial and the addresses
        workers listen on, so that a client checking host names accepts them.
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(tz=datetime.timezone.utc)
    valid = {"not_valid_before": now - datetime.timedelta(minutes=5),
             "not_valid_after": now + datetime.timedelta(days=days)}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kale cluster CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid["not_valid_before"])
        .not_valid_after(valid["not_valid_after"])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    # Dask checks no host names (workers connect by IP); the names are for clients that do.
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dask-internal")])
    alt_names: list[x509.GeneralName] = [x509.DNSName("dask-internal")]
    alt_names += [x509.DNSName(n) for n in dict.fromkeys(names) if n]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(ips)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(leaf_name)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid["not_valid_before"])
        .not_valid_after(valid["not_valid_after"])
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = serialization.Encoding.PEM
    _write_private(folder / CA_FILE, ca_cert.public_bytes(pem))
    _write_private(folder / CERT_FILE, cert.public_bytes(pem))
    _write_private(
        folder / KEY_FILE,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()),
    )
    return folder


def security(folder: str | Path) -> Any:
    """Build a ``distributed.Security`` for every role from the files in ``folder``."""
    from distributed.security import Security

    folder = Path(folder)
    for name in (CA_FILE, CERT_FILE, KEY_FILE):  # a planted CA would let others in
        registry.guard_file(folder / name, what="Cluster TLS file")
    ca, cert, key = (str(folder / name) for name in (CA_FILE, CERT_FILE, KEY_FILE))
    return Security(
        tls_ca_file=ca,
        tls_client_cert=cert, tls_client_key=key,
        tls_scheduler_cert=cert, tls_scheduler_key=key,
        tls_worker_cert=cert, tls_worker_key=key,
        require_encryption=True,
    )


# --- the scheduler's dashboard -----------------------------------------------------------

# Addresses that mean "every interface": a dashboard never listens on them.
_WILDCARDS = frozenset({"", "*", "0.0.0.0", "::", "[::]"})


def dashboard_address(kind: str, options: dict[str, Any]) -> str:
    """Return the ``HOST:PORT`` the scheduler's dashboard listens on: never every interface.

    The host is the scheduler's own (``interface_host``; loopback for a local cluster; for
    a batch cluster listening everywhere, the address Dask gives its workers). A
    ``dashboard_address`` option keeps its port, and its host unless that is a wildcard.
    """
    host = str(options.get("interface_host") or "")
    if host in _WILDCARDS:
        if kind == "local":
            host = "127.0.0.1"
        else:
            from distributed.utils import get_ip

            host = get_ip()
    given = str(options.get("dashboard_address") or ":0")
    given_host, _, port = given.rpartition(":")
    if given_host not in _WILDCARDS:
        host = given_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    return f"{host}:{port or 0}"


def dashboard_server_context(folder: str | Path) -> ssl.SSLContext:
    """Return the dashboard's TLS: the cluster's certificate, a client certificate required.

    Dask's ``distributed.scheduler.dashboard.tls`` settings serve HTTPS but ask no client
    for a certificate (the context they build verifies none); this one requires one
    signed by the cluster's own CA, so only the holder of the cluster's files (its owner)
    gets past the handshake.
    """
    folder = Path(folder)
    for name in (CA_FILE, CERT_FILE, KEY_FILE):
        registry.guard_file(folder / name, what="Cluster TLS file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(folder / CA_FILE))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(folder / CERT_FILE), str(folder / KEY_FILE))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def dashboard_client_context(folder: str | Path) -> ssl.SSLContext:
    """TLS for a client of the dashboard: the owner's certificate, the cluster's CA trusted.

    Host names are not checked: the CA is the cluster's own and signed one certificate
    only, so a server that passes the chain check is the cluster's dashboard whatever
    address it was reached at.
    """
    folder = Path(folder)
    for name in (CA_FILE, CERT_FILE, KEY_FILE):
        registry.guard_file(folder / name, what="Cluster TLS file")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(folder / CA_FILE))
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(folder / CERT_FILE), str(folder / KEY_FILE))
    return context


def dashboard_scheduler(folder: str | Path) -> type[Any]:
    """Return a ``distributed.Scheduler`` whose dashboard uses :func:`dashboard_server_context`.

    The context is given to the HTTP server as it is made, so no connection is ever
    served without a client certificate, not even while the cluster starts.
    """
    import dask.config
    from distributed import Scheduler

    context = dashboard_server_context(folder)

    def start_http_server(self: Any, routes: Any, dashboard_address: Any,
                          default_port: int = 0, ssl_options: Any = None) -> None:
        # Dask's own dashboard TLS settings would replace the context: they are off here.
        with dask.config.set({"distributed.scheduler.dashboard.tls.cert": None}):
            Scheduler.start_http_server(self, routes, dashboard_address, default_port,
                                        ssl_options=context)

    # Named as Dask's: its identity ("type": "Scheduler") is what clients see.
    return type("Scheduler", (Scheduler,), {"start_http_server": start_http_server,
                                            "__module__": __name__})


def dashboard_link(scheduler: Any, *, tls: bool) -> str | None:
    """Return the dashboard's direct address (``https://HOST:PORT/status``), or None."""
    server = getattr(scheduler, "http_server", None)
    address, port = getattr(server, "address", None), getattr(server, "port", None)
    if not address or not port:
        return None
    host = f"[{address}]" if ":" in address else address
    return f"{'https' if tls else 'http'}://{host}:{port}/status"
