"""The simulated tube store served over OPC UA (asyncua server) with the model of
docs/store-opcua.md, mirroring a `StoreModel` stepped on the room's simulated clock.

Methods validate at once and answer with an operation id; the robot then works on the
simulated clock, and the `Operation` variables report how it ended. Server faults:
`disconnect` stops the server until cleared (the store itself goes on working), `restart`
stops it and starts it again on the same port (sessions and subscriptions are lost, clients
must re-create them; the address space is built once, as a store's firmware would rebuild the
same model), `hang` holds method calls unanswered (a hung controller) and, once cleared, refuses
the held calls with `BadTimeout` without running them. Not modelled: several sessions'
contention, the LADS and DI type hierarchy (plain objects and folders carry LADS's names, all in
the store's namespace), events, history, diagnostics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog
from asyncua import Node, Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from controllerd.config import TubeStoreConfig
from controllerd.sim_config import StoreSecuritySimulation
from drivers.opcua_model import NAMESPACE_URI, DoorState, tubes_to_array
from drivers.opcua_model import names as model
from simulators._errors import FaultError, SimulatorError
from simulators._station import PickStation
from simulators.store._model import MODEL_FAULTS, StoreModel, StoreRejected

# asyncua logs each client that goes away, at WARNING with tracebacks.
logging.getLogger("asyncua").setLevel(logging.CRITICAL)

_log = structlog.get_logger("simulators.store")

#: Simulated seconds per model step.
STEP_S = 0.1
#: Real seconds between two syncs of the model into the address space.
TICK_S = 0.05
STORE_FAULTS = (*MODEL_FAULTS, "disconnect", "restart", "hang")

_String = ua.VariantType.String
_Int32 = ua.VariantType.Int32
_UInt16 = ua.VariantType.UInt16
_UInt32 = ua.VariantType.UInt32
_Double = ua.VariantType.Double
_LocalizedText = ua.VariantType.LocalizedText
_EUInformation = ua.VariantType.ExtensionObject

#: Objects of the model that are folders (they only organise their children, as in LADS).
_FOLDERS = frozenset({model.FUNCTIONAL_UNITS, model.FUNCTIONS, model.PICK_STATION, model.RACKS})
#: degree Celsius in the UNECE table (OPC UA Part 8, EUInformation)
_CELSIUS = ua.EUInformation(
    NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
    UnitId=4408652,
    DisplayName=ua.LocalizedText("°C"),
    Description=ua.LocalizedText("degree Celsius"),
)


def _argument(name: str, type_id: int, description: str) -> ua.Argument:
    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ua.NodeId(ua.Int32(type_id))
    arg.ValueRank = -1
    arg.Description = ua.LocalizedText(description)
    return arg


_RACK_ARG = _argument("RackId", ua.ObjectIds.String, "the rack's id (its browse name under Racks)")
_PORT_ARG = _argument("Port", ua.ObjectIds.String, "a pick-station port (P1, P2, ...)")
_OUTPUTS = [
    _argument("OperationId", ua.ObjectIds.UInt32, "compare with Operation/CompletedId"),
    _argument("ExpectedDurationS", ua.ObjectIds.Double, "the store's estimate, its own seconds"),
]


def _load_der(path: Path) -> bytes:
    """A certificate file (PEM or DER) as DER bytes."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----"):
        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data


class _PasswordUsers:
    """Exactly one user, with the password in a file."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username == self._username and password == self._password:
            return User(role=UserRole.User, name=username)
        return None


class SimulatedStore:
    """One tube store: its model, stepped on `now()`, served at its config's URL while entered."""

    def __init__(
        self,
        *,
        config: TubeStoreConfig,
        station: PickStation,
        ambient_c: float,
        rng: random.Random,
        now: Callable[[], float],
        base_dir: Path | None = None,
    ) -> None:
        if config.simulation is None:
            raise SimulatorError(f"{config.id}: no simulation block")
        self.config = config
        self.model = StoreModel(
            params=config.simulation, ambient_c=ambient_c, station=station, rng=rng
        )
        self._now = now
        self._base_dir = base_dir
        self._server: Server | None = None
        self._serving = False
        self._nodes: dict[tuple[str, ...], Node] = {}
        self._objects: dict[tuple[str, ...], Node] = {}
        self._written: dict[tuple[str, ...], Any] = {}
        self._faults: set[str] = set()
        self._stepped_s = 0.0
        self._lock = asyncio.Lock()
        #: set while method calls are answered; `hang` swaps in an unset one that holds them
        self._answering = asyncio.Event()
        self._answering.set()
        self._tasks: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self.restarts = 0

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.config.driver.port}/"

    @property
    def faults(self) -> frozenset[str]:
        return frozenset(self._faults)

    @property
    def serving(self) -> bool:
        return self._serving

    @property
    def stepped_s(self) -> float:
        """The simulated time the model has been stepped to."""
        return self._stepped_s

    def check_fault(self, fault: str) -> None:
        """Raise FaultError when a tube store cannot have `fault`."""
        if fault not in STORE_FAULTS:
            raise FaultError(
                f"a tube_store has no '{fault}' fault (it has: {', '.join(sorted(STORE_FAULTS))})",
                device=self.id,
                fault=fault,
            )

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        self._server = await self._build_server()
        await self._start_server()
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._runner = self._tasks.create_task(self._run(), name=f"store-{self.id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            self._runner.cancel()
        tasks, self._tasks, self._runner = self._tasks, None, None
        if tasks is not None:
            await tasks.__aexit__(None, None, None)
        self._faults.discard("hang")
        await self._stop_server()
        self._server = None

    async def _run(self) -> None:
        while True:
            async with self._lock:
                self.step_to(self._now())
                await self._sync()
            await asyncio.sleep(TICK_S)

    def step_to(self, sim_time_s: float) -> None:
        """Advance the model in fixed steps up to `sim_time_s`."""
        if sim_time_s < self._stepped_s:
            self._stepped_s = sim_time_s  # the room restarted its clock
        while self._stepped_s + STEP_S <= sim_time_s:
            self.model.step(STEP_S)
            self._stepped_s += STEP_S

    # ------------------------------------------------------------------ faults

    async def inject(self, fault: str, *, clear: bool = False) -> bool:
        """Inject (or clear) a fault; True when that changed anything."""
        self.check_fault(fault)
        async with self._lock:
            if fault == "restart":
                if clear:
                    return False
                self.restarts += 1
                await self._stop_server()
                if "disconnect" not in self._faults:
                    await self._start_server()
                return True
            if clear == (fault not in self._faults):
                return False
            if clear:
                self._faults.discard(fault)
            else:
                self._faults.add(fault)
            if fault == "disconnect":
                if clear:
                    await self._start_server()
                else:
                    await self._stop_server()
            elif fault == "hang":
                self._release_held_calls()
            else:
                self.model.set_fault(fault, not clear)
                await self._sync()
            return True

    def _release_held_calls(self) -> None:
        """Answer every held method call (refused); hold new ones while `hang` is on."""
        self._answering.set()
        if "hang" in self._faults:
            self._answering = asyncio.Event()

    def state(self) -> dict[str, Any]:
        """What the control endpoint's `status` reports for this store."""
        return {
            **self.model.snapshot(),
            "transport": "opcua",
            "url": self.url,
            "answering": self.serving,
            "faults": sorted(self._faults),
            "restarts": self.restarts,
        }

    # ------------------------------------------------------------------ the server

    def _path(self, path: Path) -> Path:
        return path if path.is_absolute() or self._base_dir is None else self._base_dir / path

    async def _configure_security(self, server: Server, security: StoreSecuritySimulation) -> None:
        modes = {
            "Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
            "SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
        }
        server.set_security_policy([modes[mode] for mode in security.modes])
        cert_path = self._path(security.certificate)
        await server.load_certificate(str(cert_path))
        await server.load_private_key(str(self._path(security.private_key)))
        cert = x509.load_der_x509_certificate(_load_der(cert_path))
        with contextlib.suppress(x509.ExtensionNotFound):
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
            if uris:
                await server.set_application_uri(uris[0])
        trusted = {_load_der(self._path(p)) for p in security.trusted_certificates}

        async def validate(certificate: x509.Certificate, app: ua.ApplicationDescription) -> None:
            der = certificate.public_bytes(Encoding.DER)
            if der not in trusted:
                _log.warning(
                    "refused an untrusted client certificate",
                    device=self.id,
                    subject=certificate.subject.rfc4514_string(),
                )
                raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

        server.set_certificate_validator(validate)
        if security.username is not None and security.password_file is not None:
            password = self._path(security.password_file).read_text(encoding="utf-8").strip()
            server.iserver.user_manager = _PasswordUsers(security.username, password)  # type: ignore[assignment]
            server.set_identity_tokens([ua.UserNameIdentityToken])

    async def _build_server(self) -> Server:
        """The server with its address space, not yet listening (building it takes seconds of
        CPU: asyncua loads the whole standard address space; restarts reuse it)."""
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name(f"Simulated tube store {self.id}")
        security = self.config.simulation.security if self.config.simulation else None
        if security is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            await self._configure_security(server, security)
        await self._build(server)
        return server

    async def _start_server(self) -> None:
        server = self._server
        assert server is not None
        # asyncua derives its endpoints and channel policies at every start and appends them;
        # a restarted server must offer each once.
        server.iserver.endpoints.clear()
        server._policies.clear()
        try:
            await server.start()
        except OSError as exc:
            raise SimulatorError(f"{self.id}: cannot serve {self.url}: {exc.strerror}") from exc
        self._serving = True
        _log.info("store serving", device=self.id, url=self.url)

    async def _stop_server(self) -> None:
        server = self._server
        if server is None or not self._serving:
            return
        self._serving = False
        # Held calls are answered before their connections go (their tasks must end).
        self._release_held_calls()
        # asyncua keeps the sessions of vanished clients (for their reconnect) with their
        # timeout and publishing tasks; a stopped server must not leave them running.
        sessions = list(getattr(server.iserver, "_external_sessions", {}).values())
        for session in sessions:
            with contextlib.suppress(Exception):
                await session.close_session(True)
        with contextlib.suppress(Exception):
            await server.stop()
        _log.info("store server stopped", device=self.id)

    async def _build(self, server: Server) -> None:
        idx = await server.register_namespace(NAMESPACE_URI)
        store = await server.nodes.objects.add_object(idx, model.STORE)
        objects = self._objects
        objects[()] = store

        async def parent_of(path: tuple[str, ...]) -> Node:
            for depth in range(1, len(path)):
                key = path[:depth]
                if key not in objects:
                    above, name = objects[key[:-1]], key[-1]
                    objects[key] = await (
                        above.add_folder(idx, name)
                        if name in _FOLDERS
                        else above.add_object(idx, name)
                    )
            return objects[path[:-1]]

        async def variable(path: tuple[str, ...], value: Any, vtype: ua.VariantType) -> None:
            self._nodes[path] = await (await parent_of(path)).add_variable(
                idx, path[-1], value, vtype
            )
            self._written[path] = value

        async def state(path: tuple[str, ...], label: str, number: int) -> None:
            """A state variable: `CurrentState` (its name) with its `Number` property."""
            await variable(path, ua.LocalizedText(label), _LocalizedText)
            self._nodes[(*path, model.STATE_NUMBER)] = await self._nodes[path].add_property(
                idx, model.STATE_NUMBER, number, _UInt32
            )
            self._written[(*path, model.STATE_NUMBER)] = number

        async def sensor(path: tuple[str, ...], value: float) -> None:
            await variable(path, value, _Double)
            await self._nodes[path].add_property(
                idx, model.ENGINEERING_UNITS, _CELSIUS, _EUInformation
            )

        m = self.model
        values = self._values()
        for rack_id in m.racks:
            tower, shelf = m.home[rack_id]
            await variable((model.RACKS, rack_id, model.RACK_TOWER), tower, _UInt16)
            await variable((model.RACKS, rack_id, model.RACK_SHELF), shelf, _UInt16)
        for path, (value, vtype) in values.items():
            if path in (model.STATE, model.DOOR_STATE):
                number, _ = values[(*path, model.STATE_NUMBER)]
                await state(path, value.Text, number)
            elif path in (model.STATE_CODE, model.DOOR_STATE_CODE):
                continue  # built with its state variable
            elif path in (model.CHAMBER_TEMPERATURE, model.PICK_CHAMBER_TEMPERATURE):
                await sensor(path, value)
            else:
                await variable(path, value, vtype)
        robot = await parent_of(model.method_path(model.RETRIEVE_RACK))
        await robot.add_method(
            idx, model.RETRIEVE_RACK, self._retrieve, [_RACK_ARG, _PORT_ARG], _OUTPUTS
        )
        await robot.add_method(idx, model.STORE_RACK, self._store, [_RACK_ARG], _OUTPUTS)
        await robot.add_method(idx, model.SCAN_RACK, self._scan, [_RACK_ARG], _OUTPUTS)
        await robot.add_method(idx, model.RESET, self._reset, [], [])

    async def drop(self, path: tuple[str, ...]) -> None:
        """Remove a part of the served model (the node at `path` below the store object and
        everything under it; `()` is the store object): a server that lacks part of the model,
        for testing clients against one. The server restarts around it (sessions are lost, as
        a store's firmware update would do); nothing brings the part back but a new simulator."""
        server = self._server
        below = [p for p in (*self._nodes, *self._objects) if p[: len(path)] == path]
        node = self._nodes.get(path) or self._objects.get(path)
        if server is None or node is None:
            raise SimulatorError(f"{self.id}: the model has no node {'/'.join(path) or '(store)'}")
        async with self._lock:
            # Not while served: asyncua's delete of a monitored node leaves its data-change
            # callbacks unawaited.
            serving = self._serving
            await self._stop_server()
            await server.delete_nodes([node], recursive=True)
            for gone in below:
                self._nodes.pop(gone, None)
                self._objects.pop(gone, None)
            if serving:
                await self._start_server()

    def _values(self) -> dict[tuple[str, ...], tuple[Any, ua.VariantType]]:
        """Every variable that changes, in the order a sync writes them."""
        m = self.model
        done = m.completed
        door = DoorState.OPENED if m.door_open else DoorState.CLOSED
        values: dict[tuple[str, ...], tuple[Any, ua.VariantType]] = {
            # The fault before the state: a client that sees Faulted already has the reason.
            model.FAULT_TEXT: (m.faulted_text, _String),
            model.FAULT_CODE: (int(m.fault_code), _Int32),
            model.STATE: (ua.LocalizedText(m.state.label), _LocalizedText),
            model.STATE_CODE: (int(m.state), _UInt32),
            model.DOOR_STATE: (ua.LocalizedText(door.label), _LocalizedText),
            model.DOOR_STATE_CODE: (int(door), _UInt32),
            model.CHAMBER_TEMPERATURE: (round(m.chamber_reading_c, 2), _Double),
            model.PICK_CHAMBER_TEMPERATURE: (round(m.pick_chamber_reading_c, 2), _Double),
            model.OP_METHOD: (done.method, _String),
            model.OP_RESULT: (done.status, _String),
            model.OP_RESULT_CODE: (_status_code(done.status), _UInt32),
            model.OP_DURATION_S: (done.duration_s, _Double),
            model.OP_MESSAGE: (done.message, _String),
            model.OP_LAST_REJECTION: (m.last_rejection, _String),
        }
        for port, rack in m.station.racks.items():
            values[(model.PICK_STATION, port, model.PORT_RACK_ID)] = (
                rack.rack_id if rack else "",
                _String,
            )
        for rack_id in m.racks:
            values[(model.RACKS, rack_id, model.RACK_LOCATION)] = (m.location[rack_id], _String)
            values[(model.RACKS, rack_id, model.RACK_TUBES)] = (
                tubes_to_array(m.scanned[rack_id]),
                _String,
            )
        # Last: a client that sees the new id reads a finished result.
        values[model.OP_COMPLETED_ID] = (done.op_id, _UInt32)
        return values

    async def _sync(self) -> None:
        """Write every value that changed since the last sync into the address space (also
        while the server is stopped: the store goes on working)."""
        if self._server is None:
            return
        for path, (value, vtype) in self._values().items():
            if self._written.get(path) == value or path not in self._nodes:
                continue
            await self._nodes[path].write_value(ua.Variant(value, vtype))
            self._written[path] = value

    # ------------------------------------------------------------------ methods

    async def _held(self) -> ua.StatusCode | None:
        """While `hang` is on, hold the call unanswered; once released it is refused, not run."""
        if "hang" not in self._faults:
            return None
        await self._answering.wait()
        return ua.StatusCode(ua.UInt32(ua.StatusCodes.BadTimeout))

    async def _start(self, start: Callable[[], tuple[int, float]]) -> Any:
        held = await self._held()
        if held is not None:
            return held
        async with self._lock:
            try:
                op_id, expected = start()
            except StoreRejected as exc:
                _log.info("method refused", device=self.id, status=exc.status, reason=exc.message)
                await self._sync()
                return ua.StatusCode(ua.UInt32(getattr(ua.StatusCodes, exc.status)))
            await self._sync()
        return [ua.Variant(op_id, _UInt32), ua.Variant(expected, _Double)]

    async def _text_args(self, args: tuple[Any, ...], count: int) -> list[str] | ua.StatusCode:
        values = [getattr(arg, "Value", arg) for arg in args]
        if len(values) != count or not all(isinstance(v, str) for v in values):
            async with self._lock:
                self.model.last_rejection = f"expected {count} String argument(s)"
                await self._sync()
            return ua.StatusCode(ua.UInt32(ua.StatusCodes.BadInvalidArgument))
        return [str(v) for v in values]

    async def _retrieve(self, parent: ua.NodeId, *args: Any) -> Any:
        texts = await self._text_args(args, 2)
        if isinstance(texts, ua.StatusCode):
            return texts
        return await self._start(lambda: self.model.retrieve(texts[0], texts[1]))

    async def _store(self, parent: ua.NodeId, *args: Any) -> Any:
        texts = await self._text_args(args, 1)
        if isinstance(texts, ua.StatusCode):
            return texts
        return await self._start(lambda: self.model.store(texts[0]))

    async def _scan(self, parent: ua.NodeId, *args: Any) -> Any:
        texts = await self._text_args(args, 1)
        if isinstance(texts, ua.StatusCode):
            return texts
        return await self._start(lambda: self.model.scan(texts[0]))

    async def _reset(self, parent: ua.NodeId, *args: Any) -> Any:
        held = await self._held()
        if held is not None:
            return held
        async with self._lock:
            try:
                self.model.reset()
            except StoreRejected as exc:
                await self._sync()
                return ua.StatusCode(ua.UInt32(getattr(ua.StatusCodes, exc.status)))
            await self._sync()
        _log.info("store reset", device=self.id)
        return []


def _status_code(name: str) -> int:
    return int(getattr(ua.StatusCodes, name, ua.StatusCodes.Bad))
