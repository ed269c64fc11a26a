"""One live OPC UA session with a tube store: connected, browsed, subscribed.

`open_session` connects (with security and user identity when configured), finds the model by
browse names under its namespace URI, and subscribes to the values the daemon watches. The
session is gone for good once `next_change` raises; the driver then opens a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from asyncua import Client, Node, ua
from asyncua.common.subscription import DataChangeEvent, StatusChangeEvent, Subscription
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509

from drivers._errors import ConnectFailed, DriverError, ProtocolError
from drivers.opcua._errors import translate
from drivers.opcua_model import (
    Inventory,
    OpcUaConfig,
    OperationResult,
    RackRecord,
    names,
    tubes_from_array,
)

# asyncua logs every lost connection and failed close at WARNING/ERROR with tracebacks; the
# driver reports each outage itself, once.
logging.getLogger("asyncua").setLevel(logging.CRITICAL)

Path = tuple[str, ...]

#: Paths the subscription watches: the telemetry, the state text and the operation counter.
WATCHED: tuple[Path, ...] = (
    *names.TELEMETRY_PATHS.values(),
    names.STATE,
    names.FAULT_TEXT,
    names.OP_COMPLETED_ID,
)
_OPERATION_PATHS: tuple[Path, ...] = (
    names.OP_COMPLETED_ID,
    names.OP_METHOD,
    names.OP_RESULT,
    names.OP_RESULT_CODE,
    names.OP_DURATION_S,
    names.OP_MESSAGE,
)
_RESOLVED: tuple[Path, ...] = (
    *WATCHED,
    *_OPERATION_PATHS[1:],
    names.OP_LAST_REJECTION,
    (names.PICK_STATION,),
    (names.RACKS,),
    names.RACK_ROBOT,
    *(names.method_path(method) for method in names.METHODS),
)


def _relative_path(path: Sequence[str], ns: int) -> ua.RelativePath:
    rpath = ua.RelativePath()
    for name in path:
        element = ua.RelativePathElement()
        element.ReferenceTypeId = ua.NodeId(ua.Int32(ua.ObjectIds.HierarchicalReferences))
        element.IncludeSubtypes = True  # type: ignore[assignment]
        element.IsInverse = False  # type: ignore[assignment]
        element.TargetName = ua.QualifiedName(name, ns)
        rpath.Elements.append(element)
    return rpath


def _certificate_uri(path: str) -> str | None:
    """The application URI in a certificate's subject alternative names (OPC UA requires it to
    match the client's ApplicationUri)."""
    with open(path, "rb") as handle:  # noqa: PTH123 - asyncua takes paths as str
        data = handle.read()
    cert = (
        x509.load_pem_x509_certificate(data)
        if data.lstrip().startswith(b"-----")
        else x509.load_der_x509_certificate(data)
    )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


class StoreSession:
    """A connected client whose model nodes are resolved; one subscription feeds `values`."""

    def __init__(
        self, *, client: Client, device: str, config: OpcUaConfig, ns: int, store: Node
    ) -> None:
        self.client = client
        self.device = device
        self._config = config
        self.ns = ns
        self.store = store
        self.nodes: dict[Path, Node] = {}
        self._path_of: dict[ua.NodeId, Path] = {}
        self._subscription: Subscription | None = None
        #: latest value of every watched path (filled by the subscription)
        self.values: dict[Path, Any] = {}
        self._lost: asyncio.Event = asyncio.Event()

    async def _translate(self, start: Node, paths: Sequence[Path]) -> list[Node | None]:
        results = await self.client.translate_browsepaths(
            start.nodeid, [_relative_path(path, self.ns) for path in paths]
        )
        nodes: list[Node | None] = []
        for result in results:
            if not result.StatusCode.is_good() or not result.Targets:
                nodes.append(None)
                continue
            target = result.Targets[0].TargetId
            nodes.append(self.client.get_node(ua.NodeId(target.Identifier, target.NamespaceIndex)))
        return nodes

    async def resolve(self) -> None:
        """Find every node of the model by browse path; ProtocolError naming what is missing."""
        found = await self._translate(self.store, _RESOLVED)
        missing = ["/".join(path) for path, node in zip(_RESOLVED, found, strict=True) if not node]
        if missing:
            raise ProtocolError(
                f"the server's {names.STORE} lacks {', '.join(missing)} (not our store model)",
                device=self.device,
                operation="browse",
            )
        for path, node in zip(_RESOLVED, found, strict=True):
            assert node is not None
            self.nodes[path] = node
        self._path_of = {self.nodes[path].nodeid: path for path in WATCHED}

    async def subscribe(self) -> None:
        """Subscribe to the watched values and wait for the first value of each."""
        self.client.connection_lost_callback = self._on_lost
        sub = await self.client.create_subscription(self._config.publishing_interval_ms, None)
        self._subscription = sub
        await sub.subscribe_data_change([self.nodes[path] for path in WATCHED])
        async with asyncio.timeout(self._config.timeout_s):
            while len(self.values) < len(WATCHED):
                await self.next_change()

    async def _on_lost(self, exc: Exception) -> None:
        self._lost.set()

    async def next_change(self) -> Path | None:
        """Wait for the next data change and record it; the path changed, or None after a quiet
        interval. Raises ConnectionError once the session is lost."""
        assert self._subscription is not None
        if self._lost.is_set():
            raise ConnectionError("session lost")
        event = await self._subscription.next_event(timeout=0.5)
        if isinstance(event, StatusChangeEvent) and not event.notification.Status.is_good():
            raise ConnectionError(f"subscription status {event.notification.Status.name}")
        if isinstance(event, DataChangeEvent):
            path = self._path_of.get(event.node.nodeid)
            if path is not None:
                self.values[path] = event.value
                return path
        if self._lost.is_set():
            raise ConnectionError("session lost")
        return None

    async def read(self, paths: Sequence[Path]) -> list[Any]:
        """Current values of resolved paths, in one Read."""
        return list(await self.client.read_values([self.nodes[path] for path in paths]))

    async def read_operation(self) -> OperationResult:
        """The last completed operation, read in one request (its fields agree)."""
        op_id, method, status, code, duration, message = await self.read(_OPERATION_PATHS)
        return OperationResult(
            operation_id=int(op_id),
            method=str(method),
            status=str(status),
            status_code=int(code),
            duration_s=float(duration),
            message=str(message),
        )

    async def call(self, method: str, *args: Any) -> list[Any]:
        """Call a method of the rack robot; its output arguments (UaStatusCodeError when
        refused)."""
        robot = self.nodes[names.RACK_ROBOT]
        result = await robot.call_method(self.nodes[names.method_path(method)].nodeid, *args)
        if result is None:
            return []
        return list(result) if isinstance(result, list) else [result]

    async def last_rejection(self) -> str:
        """Why the store refused the last method call (its `LastRejection` text)."""
        (text,) = await self.read([names.OP_LAST_REJECTION])
        return str(text or "")

    async def inventory(self) -> Inventory:
        """Every rack with its slot, location and tubes, and every port: five requests."""
        racks_node = self.nodes[(names.RACKS,)]
        station_node = self.nodes[(names.PICK_STATION,)]
        rack_refs = await racks_node.get_references(
            ua.ObjectIds.HierarchicalReferences, ua.BrowseDirection.Forward, ua.NodeClass.Object
        )
        port_refs = await station_node.get_references(
            ua.ObjectIds.HierarchicalReferences, ua.BrowseDirection.Forward, ua.NodeClass.Object
        )
        rack_ids = [str(ref.BrowseName.Name) for ref in rack_refs]
        port_names = [str(ref.BrowseName.Name) for ref in port_refs]
        fields = (names.RACK_TOWER, names.RACK_SHELF, names.RACK_LOCATION, names.RACK_TUBES)
        rack_paths = [(names.RACKS, rack, field) for rack in rack_ids for field in fields]
        port_paths = [(names.PICK_STATION, port, names.PORT_RACK_ID) for port in port_names]
        found = await self._translate(self.store, [*rack_paths, *port_paths])
        lacking = [
            "/".join(path)
            for path, node in zip([*rack_paths, *port_paths], found, strict=True)
            if node is None
        ]
        if lacking:
            raise ProtocolError(
                f"inventory nodes missing: {', '.join(lacking[:5])}",
                device=self.device,
                operation="inventory",
            )
        values = await self.client.read_values([node for node in found if node is not None])
        racks = []
        for index, rack in enumerate(rack_ids):
            tower, shelf, location, tubes = values[index * 4 : index * 4 + 4]
            try:
                record = RackRecord(
                    rack_id=rack,
                    tower=int(tower),
                    shelf=int(shelf),
                    location=str(location),
                    tubes=tubes_from_array(list(tubes or [])),
                )
            except (TypeError, ValueError) as exc:
                raise ProtocolError(
                    f"rack {rack}: {exc}", device=self.device, operation="inventory"
                ) from exc
            racks.append(record)
        ports = {
            port: (str(value) or None)
            for port, value in zip(port_names, values[len(rack_paths) :], strict=True)
        }
        return Inventory(racks=tuple(racks), ports=ports)

    async def close(self) -> None:
        """Disconnect, politely if the server is still there; raises nothing but a
        cancellation, and leaves none of the client's tasks behind even then."""
        await _disconnect(self.client, self._config.timeout_s)


async def _configure(client: Client, config: OpcUaConfig) -> None:
    security = config.security
    if security is not None:
        uri = _certificate_uri(str(security.certificate))
        if uri:
            client.application_uri = uri
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=str(security.certificate),
            private_key=str(security.private_key),
            server_certificate=(
                str(security.server_certificate) if security.server_certificate else None
            ),
            mode=getattr(ua.MessageSecurityMode, security.mode),
        )
    if config.username is not None and config.password_file is not None:
        client.set_user(config.username)
        client.set_password(config.password_file.read_text(encoding="utf-8").strip())


@contextlib.asynccontextmanager
async def open_session(*, config: OpcUaConfig, device: str) -> AsyncIterator[StoreSession]:
    """Connect, browse and subscribe; a DriverError names what failed. Closes on exit."""
    client = Client(
        config.url, timeout=config.timeout_s, watchdog_intervall=min(config.timeout_s, 2.0)
    )
    client.name = client.description = f"controllerd {device}"
    try:
        async with asyncio.timeout(config.timeout_s * 3):
            await _configure(client, config)
            await client.connect()
            try:
                ns = await client.get_namespace_index(config.namespace_uri)
            except ValueError as exc:
                raise ConnectFailed(
                    f"the server has no namespace {config.namespace_uri} (not a tube store)",
                    device=device,
                    operation="connect",
                ) from exc
            objects = client.nodes.objects
            session = StoreSession(
                client=client, device=device, config=config, ns=ns, store=objects
            )
            (store,) = await session._translate(objects, [(names.STORE,)])
            if store is None:
                raise ConnectFailed(
                    f"no {names.STORE} object under Objects", device=device, operation="connect"
                )
            session.store = store
            await session.resolve()
            await session.subscribe()
    except BaseException as exc:
        if not isinstance(exc, Exception):
            # Cancelled (the driver closing mid-connect): no polite goodbye to wait for, but a
            # connected client runs tasks of its own (channel renewal, a watchdog) that must go.
            _drop(client)
            raise
        await _disconnect(client, config.timeout_s)
        if isinstance(exc, DriverError):
            raise
        raise translate(exc, device=device, operation="connect") from exc
    try:
        yield session
    finally:
        await session.close()


#: asyncua's background tasks of a connected client, which its `disconnect` cancels: the
#: client's own, and its session's publish loop (which retries a dead socket every second)
_CLIENT_TASKS = ("_stale_watchdog_task", "_supervisor_task", "_renew_channel_task")
_SESSION_TASKS = ("_publish_task",)


async def _disconnect(client: Client, timeout_s: float) -> None:
    """Close the session politely within `timeout_s`, then drop the socket and whatever task
    of the client is still running: a disconnect cut short (timed out, or cancelled while
    its owner is closed) must not leave the client's tasks behind."""
    try:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout_s):
                await client.disconnect()
    finally:
        _drop(client)


def _drop(client: Client) -> None:
    """The client's socket closed and its tasks cancelled, at once (no goodbye)."""
    with contextlib.suppress(Exception):
        client.disconnect_socket()
    session = getattr(client.uaclient, "session", None)
    # Private to asyncua (2.1): recheck on an upgrade (the store tests fail if they move).
    tasks = [getattr(client, name, None) for name in _CLIENT_TASKS]
    tasks += [getattr(session, name, None) for name in _SESSION_TASKS]
    for task in tasks:
        if isinstance(task, asyncio.Task) and not task.done():
            task.cancel()
