"""The EventBus gRPC server: mutual TLS, Publish / Subscribe / Health, a clean stop.

Threads rather than grpc.aio: the work behind a publish is the store's writer thread
(SQLite releases the GIL while it commits) and a ``Future`` to wait on, signature
checks and protobuf parsing are short C calls, and a subscriber blocks on a condition
between commits. A thread pool sized for ``max_pending_batches`` waiting publishers
plus a few subscribers expresses that directly; an event loop would only add a bridge
from the store's futures, without making the commits (the bottleneck) any faster.

Publish is registered with a streaming request on the server side (the wire format of
a unary call is the same, so generated unary stubs call it unchanged). gRPC's own size
limit is twice ``max_message_bytes``: a message up to that arrives, the deserializer
sees it is over ``max_message_bytes`` before parsing it, and the bus answers INVALID
``oversized``. gRPC refuses a bigger message before any handler runs; only a request
stream lets the handler see such a call end without a message, so that it is counted
``oversized`` too (the client sees RESOURCE_EXHAUSTED, which ``BusClient`` turns into
the same INVALID ``oversized`` ack).
"""

from __future__ import annotations

import socket
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc

from amoskys import __version__
from amoskys.bus import bus_pb2, ledger
from amoskys.bus.accounting import Accounting
from amoskys.bus.certs import load_server_credentials
from amoskys.bus.feed import CommitFeed, stored_batches
from amoskys.bus.intake import Intake, Refused, envelope_parser
from amoskys.bus.keyring import KeyRing
from amoskys.bus.metrics import MetricsServer, render
from amoskys.bus.replay import ReplayGuard
from amoskys.config import BusConfig
from amoskys.errors import TransportError
from amoskys.store import Store
from amoskys.timeutil import NS

SERVICE = "amoskys.bus.v1.EventBus"
MAX_SUBSCRIBERS = 16
SPARE_THREADS = 8  # Health calls and RETRY answers while every commit slot is taken
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class Listening:
    address: str  # host:port of the gRPC server
    metrics: str | None  # URL of the Prometheus endpoint, None when off


class BusServer:
    """Open the store, load the keys, listen; ``stop()`` undoes it all, in order.

    Used as ``with BusServer(store_path, certs_dir, BusConfig(port=0)) as bus:``, the
    address it listens on is ``bus.listening.address``.
    """

    def __init__(self, store_path: Path, certs_dir: Path, config: BusConfig, max_future_s: float | None = None):
        self.store_path = Path(store_path)
        self.certs_dir = Path(certs_dir)
        self.config = config
        self.max_future_s = max_future_s
        self.listening: Listening | None = None
        self._subscribers = 0
        self._subscribers_lock = threading.Lock()

    def start(self) -> BusServer:
        config = self.config
        credentials = load_server_credentials(self.certs_dir)
        self.keys = KeyRing(self.certs_dir)
        self.keys.reload()
        extra = {} if self.max_future_s is None else {"max_future_s": self.max_future_s}
        self.store = Store.open(self.store_path, **extra)
        try:
            self._start_serving(config, credentials)
        except BaseException:
            self.store.close()
            raise
        return self

    def _start_serving(self, config: BusConfig, credentials) -> None:
        store = self.store
        self.feed = CommitFeed()
        self.accounting = Accounting(store)
        guard = ReplayGuard(config.seq_window, int(config.max_skew_seconds * NS),
                            load=lambda agent, window: ledger.recent_envelopes(store, agent, window),
                            is_stored=lambda key: ledger.is_stored(store, key))  # fmt: skip
        self.intake = Intake(store, self.keys, guard, self.accounting, self.feed, config.max_pending_batches)
        self._pool = futures.ThreadPoolExecutor(config.max_pending_batches + MAX_SUBSCRIBERS + SPARE_THREADS,
                                                thread_name_prefix="bus")  # fmt: skip
        self._grpc = grpc.server(
            self._pool,
            handlers=[self._handlers()],
            options=[
                ("grpc.max_receive_message_length", 2 * config.max_message_bytes),
                ("grpc.so_reuseport", 0),  # a second bus on the same port must fail, not share it
            ],
        )
        server_credentials = grpc.ssl_server_credentials(
            [(credentials.key_pem, credentials.cert_pem)],
            root_certificates=credentials.ca_pem,
            require_client_auth=True,  # no client certificate from our CA, no handshake
        )
        try:
            port = self._grpc.add_secure_port(f"{config.host}:{config.port}", server_credentials)
        except RuntimeError:
            port = 0
        if port == 0:
            problem = _bind_problem(config.host, config.port)
            raise TransportError(f"cannot listen on {config.host}:{config.port}: {problem}")
        self.metrics = None
        if config.metrics_port:
            try:
                self.metrics = MetricsServer(config.host, config.metrics_port, self.metrics_page)
            except OSError as exc:
                where = f"{config.host}:{config.metrics_port}"
                raise TransportError(f"cannot serve metrics on {where}: {exc.strerror}") from None
        self._grpc.start()
        self.listening = Listening(f"{config.host}:{port}", self.metrics.address if self.metrics else None)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop accepting calls, let the ones in flight finish their commits, persist the counters, close the store."""
        if self.listening is None:
            return
        self.feed.close()  # subscribers return
        self._grpc.stop(grace_s).wait()
        self._pool.shutdown(wait=True)  # every handler has returned: no commit is awaited any more
        if self.metrics is not None:
            self.metrics.close()
        self.accounting.flush()
        self.store.close()
        self.listening = None

    def reload_keys(self) -> int:
        return self.keys.reload()

    def __enter__(self) -> BusServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- the service ---------------------------------------------------------------

    def _handlers(self) -> grpc.GenericRpcHandler:
        parse = envelope_parser(self.config.max_message_bytes)
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Publish": grpc.stream_unary_rpc_method_handler(
                self._publish, request_deserializer=parse, response_serializer=bus_pb2.Ack.SerializeToString),
            "Subscribe": grpc.unary_stream_rpc_method_handler(
                self._subscribe, request_deserializer=bus_pb2.SubscribeRequest.FromString,
                response_serializer=bytes),  # already serialized StoredBatch messages
            "Health": grpc.unary_unary_rpc_method_handler(
                self._health, request_deserializer=bus_pb2.HealthRequest.FromString,
                response_serializer=bus_pb2.HealthReply.SerializeToString),
        })  # fmt: skip

    def _publish(self, requests, context: grpc.ServicerContext) -> bus_pb2.Ack:
        try:
            envelope = next(requests, None)
        except grpc.RpcError:  # gRPC cancelled the call while the message came in
            envelope = None
        if envelope is None:
            # A unary call ends without its message only when gRPC refused it for its size
            # (over twice the limit), or the client gave up while still sending it: the bus
            # cannot tell the two apart, and counts both as oversized.
            envelope = Refused("oversized", -1)
        return self.intake.publish(envelope, peer_name(context))

    def _subscribe(self, request: bus_pb2.SubscribeRequest, context: grpc.ServicerContext):
        with self._subscribers_lock:
            full = self._subscribers >= MAX_SUBSCRIBERS
            self._subscribers += not full
        if full:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"the bus serves at most {MAX_SUBSCRIBERS} subscribers")
        context.add_callback(self.feed.wake)  # when the client leaves, its waiting subscriber returns at once
        try:
            yield from stored_batches(self.store, self.feed, request.after_position, context.is_active)
        finally:
            with self._subscribers_lock:
                self._subscribers -= 1

    def _health(self, request, context) -> bus_pb2.HealthReply:
        serving = not self.feed.closed
        return bus_pb2.HealthReply(serving=serving, version=__version__, stored_events=ledger.stored_events(self.store))

    def metrics_page(self) -> str:
        envelopes, events, quantiles, count, total = self.accounting.snapshot()
        gauges = {
            "amoskys_bus_pending_batches": ("Envelopes awaiting their commit.", self.intake.pending),
            "amoskys_bus_subscribers": ("Open Subscribe streams.", self._subscribers),
            "amoskys_bus_agent_keys": ("Registered agent signing keys.", len(self.keys)),
            "amoskys_bus_start_time_seconds": ("When the bus started, Unix time.", self.accounting.started),
        }
        return render(envelopes, events, quantiles, count, total, gauges)


def peer_name(context: grpc.ServicerContext) -> str | None:
    """The CN of the client certificate the TLS handshake verified, or None."""
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode() if len(names) == 1 else None



def _bind_problem(host: str, port: int) -> str:
    """Why gRPC could not bind host:port, in the words of the OS (gRPC's own message only says that it failed)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    except (ValueError, TypeError) as exc:  # not an address at all
        return str(exc)
    return "gRPC could not bind it"
