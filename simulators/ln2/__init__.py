"""Simulated LN2 tanks: boil-off and fill physics, the controller's ASCII protocol on a
pseudo-terminal or a TCP port, and their faults. See docs/simulators.md and
docs/ln2-protocol.md.
"""

from simulators.ln2._fleet import Ln2Fleet, tcp_port
from simulators.ln2._noise import garble
from simulators.ln2._physics import TankModel
from simulators.ln2._server import Ln2PtyLine, Ln2TcpServer
from simulators.ln2._tank import SimulatedTank

__all__ = [
    "Ln2Fleet",
    "Ln2PtyLine",
    "Ln2TcpServer",
    "SimulatedTank",
    "TankModel",
    "garble",
    "tcp_port",
]
