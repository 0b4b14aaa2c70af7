"""Start a real, private Kubernetes control plane for tests (envtest-style).

What it runs, all on free loopback ports, as child processes of this Python process:

* ``etcd`` (plain HTTP on 127.0.0.1: nothing else on the machine can reach loopback, and TLS
  to etcd would only slow startup; ``--unsafe-no-fsync`` because the data is thrown away),
* ``kube-apiserver`` over TLS with a generated CA and serving certificate,
  ``--authorization-mode=Node,RBAC``, a static token file (an admin token in
  ``system:masters``; a token for ``system:kube-scheduler``, whom the RBAC bootstrap policy
  already grants what it needs; tokens in ``system:masters`` for the controller manager and
  kwok, whose exact rights are not what these tests are about), and a service-account key
  pair so that the TokenRequest API issues real, verifiable service-account tokens,
* optionally ``kube-controller-manager`` (Deployments get ReplicaSets and pods, namespaces
  get their ``default`` service account), ``kube-scheduler`` (pods get a node) and ``kwok``
  with one fake node (pods on it reach Running without a kubelet or container runtime).

Certificates are made with the ``cryptography`` package (no openssl CLI needed). The module
needs only the standard library and ``cryptography``, so that it stays ``mypy --strict``
clean and usable outside pytest; :mod:`tests.cluster.fixtures` adds the pytest layer and the
``kubernetes`` client.

Contract: :meth:`ControlPlane.start` either returns with every requested component ready, or
raises :class:`ControlPlaneError` with the tail of the failing component's log after stopping
everything it started. :meth:`ControlPlane.stop` stops each process it started by pid
(SIGTERM, then SIGKILL after a grace period) and removes the temporary directory; it is
idempotent and also runs at interpreter exit as a safety net.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "BINARY_NAMES",
    "ControlPlane",
    "ControlPlaneError",
    "HttpResponse",
    "MissingBinariesError",
    "default_bin_dir",
    "find_binaries",
]

BINARY_NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
"""Binaries a full control plane needs; ``tests/cluster/build-binaries.sh`` builds them."""

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
KWOK_NODE_NAME = "kwok-node-0"
_KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
_LOG_TAIL_LINES = 40


class ControlPlaneError(RuntimeError):
    """A component failed to start or to become ready; the message carries its log tail."""


class MissingBinariesError(ControlPlaneError):
    """Some binaries are not in the bin directory; ``missing`` names them."""

    def __init__(self, bin_dir: Path, missing: list[str]) -> None:
        self.bin_dir = bin_dir
        self.missing = missing
        super().__init__(
            f"missing control-plane binaries in {bin_dir}: {', '.join(missing)} "
            "(build them with tests/cluster/build-binaries.sh)"
        )


def default_bin_dir() -> Path:
    """Where build-binaries.sh puts the binaries: ``$KUBENENC_CACHE_DIR/bin``.

    ``KUBENENC_CACHE_DIR`` defaults to ``~/.cache/kubenenc``, as in the build script.
    """
    cache = os.environ.get("KUBENENC_CACHE_DIR") or str(Path.home() / ".cache" / "kubenenc")
    return Path(cache) / "bin"


def find_binaries(bin_dir: Path, names: tuple[str, ...] = BINARY_NAMES) -> dict[str, Path]:
    """Return ``{name: path}`` for each of ``names`` in ``bin_dir``.

    Raises :class:`MissingBinariesError` listing every missing or non-executable one, so a
    caller can skip or fail with one clear message.
    """
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in names:
        path = bin_dir / name
        if path.is_file() and os.access(path, os.X_OK):
            found[name] = path
        else:
            missing.append(name)
    if missing:
        raise MissingBinariesError(bin_dir, missing)
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- certificates


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _make_certificates(certs: Path) -> None:
    """Write ca.crt, server.crt/.key (for 127.0.0.1 and the in-cluster names) and sa.key/.pub.

    The serving certificate is shared by the apiserver, controller manager and scheduler so
    that health probes verify TLS against the one CA. EC P-256 keys are quick to make;
    the service-account key is RSA because every consumer of SA tokens accepts RS256.
    """
    now = dt.datetime.now(dt.UTC)
    not_before = now - dt.timedelta(minutes=5)
    not_after = now + dt.timedelta(days=2)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubenenc-test-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
    ]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    pem = serialization.Encoding.PEM
    (certs / "ca.crt").write_bytes(ca_cert.public_bytes(pem))
    (certs / "server.crt").write_bytes(server_cert.public_bytes(pem))
    _write_private_key(certs / "server.key", server_key)
    _write_private_key(certs / "sa.key", sa_key)
    (certs / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


# --------------------------------------------------------------------------- processes


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]


@dataclass(frozen=True)
class HttpResponse:
    """Status and decoded JSON body (``{}`` when the body is empty or not JSON)."""

    status: int
    body: dict[str, Any]
    text: str


@dataclass
class ControlPlane:
    """A private etcd + kube-apiserver (+ optional controller manager, scheduler, kwok).

    Use as a context manager, or call :meth:`start` and :meth:`stop`. After ``start``:
    ``server_url``, ``ca_cert_path``, ``admin_token`` and ``kubeconfig_path`` (an admin
    kubeconfig, current context ``kubenenc-test``) are set, and, with kwok, a node named
    :data:`KWOK_NODE_NAME` is Ready.

    ``stop_grace`` is how long :meth:`stop` waits after SIGTERM before SIGKILL.
    ``keep_workdir`` (or env ``KUBENENC_KEEP_CONTROLPLANE=1``) keeps the temp directory with
    the logs for debugging; by default it is removed on stop.
    """

    bin_dir: Path = field(default_factory=default_bin_dir)
    with_controller_manager: bool = False
    with_scheduler: bool = False
    with_kwok: bool = False
    startup_timeout: float = 60.0
    stop_grace: float = 10.0
    keep_workdir: bool = field(
        default_factory=lambda: os.environ.get("KUBENENC_KEEP_CONTROLPLANE", "") == "1"
    )

    workdir: Path = field(init=False, default=Path())
    server_url: str = field(init=False, default="")
    ca_cert_path: Path = field(init=False, default=Path())
    admin_token: str = field(init=False, default="")
    kubeconfig_path: Path = field(init=False, default=Path())
    node_name: str | None = field(init=False, default=None)
    startup_seconds: float = field(init=False, default=0.0)
    timings: dict[str, float] = field(init=False, default_factory=dict)
    """Seconds from the start of :meth:`start` until each readiness probe passed."""
    _began: float = field(init=False, default=0.0)
    _procs: list[_Proc] = field(init=False, default_factory=list)
    _ssl: ssl.SSLContext | None = field(init=False, default=None)
    _started: bool = field(init=False, default=False)

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def required_binaries(self) -> tuple[str, ...]:
        """Names of the binaries this configuration will run."""
        names = ["etcd", "kube-apiserver"]
        if self.with_controller_manager:
            names.append("kube-controller-manager")
        if self.with_scheduler:
            names.append("kube-scheduler")
        if self.with_kwok:
            names.append("kwok")
        return tuple(names)

    def start(self) -> Self:
        """Start every requested component and wait until each one is ready.

        Raises :class:`MissingBinariesError` before starting anything if a binary is
        missing, and :class:`ControlPlaneError` (after stopping what it started) when a
        component exits early or is not ready within ``startup_timeout`` seconds overall.
        Ports are picked free just before use; if another process takes one in between
        ("address already in use"), the whole start is retried once with new ports.
        """
        if self._started:
            raise ControlPlaneError("control plane already started")
        binaries = find_binaries(self.bin_dir, self.required_binaries())
        for attempt in (1, 2):
            try:
                return self._start_once(binaries)
            except ControlPlaneError as exc:
                if attempt == 2 or "address already in use" not in str(exc):
                    raise
        raise AssertionError("unreachable")

    def _start_once(self, binaries: dict[str, Path]) -> Self:
        began = self._began = time.monotonic()
        deadline = began + self.startup_timeout
        self.timings = {}
        self._ssl = None  # a retry makes a new CA
        self.workdir = Path(tempfile.mkdtemp(prefix="kubenenc-cp-"))
        self._started = True
        atexit.register(self.stop)
        try:
            self._start_all(binaries, deadline)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop every started process by pid (SIGTERM, then SIGKILL) and remove the workdir.

        Safe to call more than once and after a failed start.
        """
        if not self._started:
            return
        self._started = False
        errors: list[str] = []
        for proc in reversed(self._procs):
            try:
                _terminate(proc.popen, self.stop_grace)
            except (OSError, subprocess.SubprocessError) as exc:  # keep stopping the others
                errors.append(f"{proc.name} (pid {proc.popen.pid}): {exc!r}")
            proc.log_file.close()
        self._procs.clear()
        atexit.unregister(self.stop)
        if not self.keep_workdir and self.workdir != Path():
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise ControlPlaneError("could not stop: " + "; ".join(errors))

    def log_path(self, name: str) -> Path:
        """The log file of component ``name`` (e.g. ``"kube-apiserver"``)."""
        return self.workdir / "logs" / f"{name}.log"

    def pids(self) -> dict[str, int]:
        """``{component: pid}`` of the running processes, in start order."""
        return {p.name: p.popen.pid for p in self._procs}

    # ----------------------------------------------------------------- HTTP helpers

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        content_type: str = "application/json",
    ) -> HttpResponse:
        """Call the API server as ``token`` (default: the admin) and return the response.

        HTTP errors are returned, not raised, so tests can assert on 403 and 404. TLS is
        verified against the generated CA.
        """
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server_url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.admin_token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context()) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        text = raw.decode(errors="replace")
        try:
            parsed = json.loads(text) if text else {}
        except json.JSONDecodeError:
            parsed = {}
        return HttpResponse(status, parsed if isinstance(parsed, dict) else {}, text)

    def ensure_service_account(self, namespace: str, name: str) -> None:
        """Create namespace ``namespace`` and ServiceAccount ``name`` in it if absent."""
        self._create_if_absent(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
        self._create_if_absent(
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        )

    def service_account_token(
        self, namespace: str, name: str, *, expiration_seconds: int = 3600
    ) -> str:
        """A real token for ServiceAccount ``namespace/name`` from the TokenRequest API.

        Creates the namespace and service account when missing. The token is signed with the
        control plane's service-account key, so RBAC applies to it exactly as in a cluster.
        """
        self.ensure_service_account(namespace, name)
        resp = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds},
            },
        )
        token = resp.body.get("status", {}).get("token")
        if resp.status != 201 or not isinstance(token, str):
            raise ControlPlaneError(
                f"TokenRequest for {namespace}/{name}: {resp.status} {resp.text}"
            )
        return token

    def write_kubeconfig(self, path: Path, *, token: str, user: str = "user") -> Path:
        """Write a kubeconfig for ``token`` against this server (JSON, which is valid YAML)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubenenc-test",
                    "cluster": {
                        "server": self.server_url,
                        "certificate-authority": str(self.ca_cert_path),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "kubenenc-test",
                    "context": {"cluster": "kubenenc-test", "user": user, "namespace": "default"},
                }
            ],
            "current-context": "kubenenc-test",
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path

    # ----------------------------------------------------------------- internals

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=str(self.ca_cert_path))
        return self._ssl

    def _create_if_absent(self, collection: str, obj: dict[str, Any]) -> None:
        resp = self.request("POST", collection, obj)
        if resp.status not in (201, 409):
            raise ControlPlaneError(f"POST {collection}: {resp.status} {resp.text}")

    def _start_all(self, binaries: dict[str, Path], deadline: float) -> None:
        certs = self.workdir / "certs"
        certs.mkdir()
        (self.workdir / "logs").mkdir()
        _make_certificates(certs)
        self.ca_cert_path = certs / "ca.crt"
        self.admin_token = secrets.token_hex(24)
        tokens = {
            "admin": (self.admin_token, "system:masters"),
            # In system:masters, so that the controllers can share the manager's identity:
            # per-controller service-account credentials cost ~5 s of startup (a
            # ServiceAccount and a token for each of ~40 controllers) and test nothing of ours.
            "system:kube-controller-manager": (secrets.token_hex(24), "system:masters"),
            "system:kube-scheduler": (secrets.token_hex(24), ""),
            "kwok": (secrets.token_hex(24), "system:masters"),
        }
        token_file = self.workdir / "tokens.csv"
        token_file.write_text(
            "".join(
                f'{tok},{user},{user},"{group}"\n' if group else f"{tok},{user},{user}\n"
                for user, (tok, group) in tokens.items()
            )
        )
        token_file.chmod(0o600)

        etcd_url = self._start_etcd(binaries["etcd"], deadline)
        self._start_apiserver(binaries["kube-apiserver"], etcd_url, certs, token_file, deadline)
        self.kubeconfig_path = self.write_kubeconfig(
            self.workdir / "admin.kubeconfig", token=self.admin_token, user="admin"
        )

        def kubeconfig_for(user: str) -> Path:
            return self.write_kubeconfig(
                self.workdir / f"{user.replace(':', '-')}.kubeconfig",
                token=tokens[user][0],
                user=user,
            )

        if self.with_controller_manager:
            self._start_controller_manager(
                binaries["kube-controller-manager"],
                kubeconfig_for("system:kube-controller-manager"),
                certs,
                deadline,
            )
        if self.with_scheduler:
            self._start_scheduler(
                binaries["kube-scheduler"], kubeconfig_for("system:kube-scheduler"), certs, deadline
            )
        if self.with_kwok:
            self._start_kwok(binaries["kwok"], kubeconfig_for("kwok"), deadline)
        if self.with_controller_manager:
            # Pods are rejected until the namespace's "default" ServiceAccount exists.
            self._wait_for(
                "kube-controller-manager",
                deadline,
                lambda: (
                    self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default").status
                    == 200
                ),
                "the default ServiceAccount in namespace default",
            )

    def _spawn(self, name: str, argv: list[str]) -> _Proc:
        log_path = self.log_path(name)
        log_file = log_path.open("wb")
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                # Own session: a Ctrl-C in the terminal reaches pytest only, and pytest's
                # teardown then stops these processes in order.
                start_new_session=True,
            )
        except OSError:
            log_file.close()
            raise
        proc = _Proc(name, popen, log_path, log_file)
        self._procs.append(proc)
        return proc

    def _wait_for(
        self,
        name: str,
        deadline: float,
        probe: Callable[[], bool],
        what: str,
    ) -> None:
        """Poll ``probe()`` until true; fail fast if process ``name`` exits, or at ``deadline``."""
        proc = next(p for p in self._procs if p.name == name)
        last_error = ""
        delay = 0.05
        while True:
            code = proc.popen.poll()
            if code is not None:
                raise ControlPlaneError(
                    f"{name} exited with code {code} while waiting for {what}; "
                    f"last lines of {proc.log_path}:\n{_tail(proc.log_path)}"
                )
            try:
                if probe():
                    self.timings[what] = round(time.monotonic() - self._began, 2)
                    return
            except (OSError, ValueError, urllib.error.URLError) as exc:
                last_error = repr(exc)
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"timed out waiting for {what} ({name}); last probe error: {last_error}; "
                    f"last lines of {proc.log_path}:\n{_tail(proc.log_path)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _https_ok(self, url: str) -> bool:
        req = urllib.request.Request(url)
        req.add_header("Authorization", f"Bearer {self.admin_token}")
        with urllib.request.urlopen(req, timeout=5, context=self._ssl_context()) as resp:
            return bool(resp.status == 200)

    def _start_etcd(self, binary: Path, deadline: float) -> str:
        client_port, peer_port = free_port(), free_port()
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(binary),
                "--name=kubenenc-test",
                f"--data-dir={self.workdir / 'etcd-data'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=kubenenc-test={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(client_url + "/health", timeout=2) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")

        self._wait_for("etcd", deadline, healthy, f"etcd health at {client_url}")
        return client_url

    def _start_apiserver(
        self, binary: Path, etcd_url: str, certs: Path, token_file: Path, deadline: float
    ) -> None:
        port = free_port()
        self.server_url = f"https://127.0.0.1:{port}"
        self._spawn(
            "kube-apiserver",
            [
                str(binary),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # The endpoint reconciler refuses a loopback address, and nothing in-cluster
                # needs the "kubernetes" Service endpoints here.
                "--endpoint-reconciler-type=none",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={certs / 'server.crt'}",
                f"--tls-private-key-file={certs / 'server.key'}",
                f"--client-ca-file={certs / 'ca.crt'}",
                # Front-proxy (aggregation) settings: only a CA-signed "front-proxy-client"
                # certificate, which nothing here has, may assert a user by header. Set so the
                # delegated authenticators of the other components find a complete config.
                f"--requestheader-client-ca-file={certs / 'ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--token-auth-file={token_file}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-key-file={certs / 'sa.pub'}",
                f"--service-account-signing-key-file={certs / 'sa.key'}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._wait_for(
            "kube-apiserver",
            deadline,
            lambda: self._https_ok(self.server_url + "/readyz"),
            f"kube-apiserver /readyz at {self.server_url}",
        )

    def _start_component(
        self,
        name: str,
        binary: Path,
        kubeconfig: Path,
        certs: Path,
        deadline: float,
        *extra: str,
    ) -> None:
        """Start a control-plane component that serves ``/healthz`` over TLS on a free
        loopback port (the controller manager, the scheduler) and wait until it answers."""
        port = free_port()
        self._spawn(
            name,
            [
                str(binary),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={certs / 'server.crt'}",
                f"--tls-private-key-file={certs / 'server.key'}",
                "--leader-elect=false",
                "--v=1",
                *extra,
            ],
        )
        url = f"https://127.0.0.1:{port}/healthz"
        self._wait_for(name, deadline, lambda: self._https_ok(url), url)

    def _start_controller_manager(
        self, binary: Path, kubeconfig: Path, certs: Path, deadline: float
    ) -> None:
        self._start_component(
            "kube-controller-manager", binary, kubeconfig, certs, deadline,
            f"--service-account-private-key-file={certs / 'sa.key'}",
            f"--root-ca-file={certs / 'ca.crt'}",
            "--use-service-account-credentials=false",
            # kwok renews its fake node's status about once a minute and keeps no node
            # Lease; under load the default 50 s grace marks it NotReady and its pods
            # unready for good. Tests do not exercise node failure, so wait long.
            "--node-monitor-grace-period=10m",
        )  # fmt: skip

    def _start_scheduler(
        self, binary: Path, kubeconfig: Path, certs: Path, deadline: float
    ) -> None:
        self._start_component("kube-scheduler", binary, kubeconfig, certs, deadline)

    def _start_kwok(self, binary: Path, kubeconfig: Path, deadline: float) -> None:
        # An explicit (empty) config file, so a ~/.kwok/kwok.yaml on the machine is not read;
        # kwok then uses its built-in "fast" stages: nodes become Ready, pods Running.
        config = self.workdir / "kwok.yaml"
        config.write_text(
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions: {}\n"
        )
        self._spawn(
            "kwok",
            [
                str(binary),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--manage-nodes-with-annotation-selector={_KWOK_NODE_ANNOTATION}=fake",
                f"--server-address=127.0.0.1:{free_port()}",
                "--node-ip=10.0.1.1",
                "--cidr=10.0.2.0/24",
            ],
        )
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": KWOK_NODE_NAME,
                "annotations": {_KWOK_NODE_ANNOTATION: "fake"},
                "labels": {
                    "kubernetes.io/hostname": KWOK_NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "status": {
                "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            },
        }
        self._create_if_absent("/api/v1/nodes", node)
        self.node_name = KWOK_NODE_NAME

        def node_ready() -> bool:
            resp = self.request("GET", f"/api/v1/nodes/{KWOK_NODE_NAME}")
            conditions = resp.body.get("status", {}).get("conditions") or []
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

        self._wait_for("kwok", deadline, node_ready, f"node {KWOK_NODE_NAME} Ready")


def _terminate(popen: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process by pid, wait ``grace`` seconds, then SIGKILL and reap it."""
    if popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(popen.pid, signal.SIGTERM)
    try:
        popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(popen.pid, signal.SIGKILL)
        popen.wait(timeout=grace)
