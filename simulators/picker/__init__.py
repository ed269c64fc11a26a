"""The tube picker's motion controller, simulated on a pseudo-terminal (docs/simulators.md).

`PickerSimulator` serves docs/firmware-protocol.md with the firmware bridge's own codecs;
`PickerModel` is its mechanics on the shared `PickStation`; `FAULTS` lists what can be injected.
"""

from simulators.picker._fleet import PickerFleet
from simulators.picker._model import PickerModel
from simulators.picker._server import FAULTS, PickerSimulator

__all__ = ["FAULTS", "PickerFleet", "PickerModel", "PickerSimulator"]
