"""The Modbus device driver: a register map read and written over a shared `ModbusLink`."""

from __future__ import annotations

from collections.abc import Sequence

from drivers._errors import InvalidRequest, ProtocolError
from drivers._interface import Reading
from drivers.modbus import (
    RegisterSpec,
    decode_block_into,
    encode_value,
    plan_reads,
    values_by_name,
)
from drivers.modbus_client._link import ModbusLink


class ModbusDriver:
    """One Modbus unit: reads its whole register map in as few requests as possible."""

    def __init__(
        self, *, device_id: str, link: ModbusLink, unit_id: int, registers: Sequence[RegisterSpec]
    ) -> None:
        self._device_id = device_id
        self._link = link
        self._unit_id = unit_id
        self._by_name = values_by_name(registers)
        self._blocks = plan_reads(registers)
        self._reads = link.prepare_reads(self._blocks, unit_id=unit_id)

    @property
    def device_id(self) -> str:
        return self._device_id

    async def connect(self) -> None:
        await self._link.connect(device=self._device_id)

    async def close(self) -> None:
        # The link is shared with other units on the same line; its owner closes it.
        return None

    async def read(self) -> Reading:
        blocks = self._blocks
        words = await self._link.read(self._reads, device=self._device_id)
        values: dict[str, float] = {}
        faults: dict[str, str] = {}
        for block, block_words in zip(blocks, words, strict=True):
            try:
                decode_block_into(block, block_words, values, faults)
            except ValueError as exc:
                raise ProtocolError(
                    str(exc), device=self._device_id, operation=block.operation
                ) from exc
        return Reading(values=values, faults=faults)

    async def write(self, name: str, value: float) -> None:
        spec = self._by_name.get(name)
        if spec is None:
            raise InvalidRequest(
                f"no value named '{name}'", device=self._device_id, operation="write"
            )
        if not spec.writable:
            raise InvalidRequest(
                f"'{name}' is not writable", device=self._device_id, operation="write"
            )
        try:
            words = encode_value(spec, value)
        except ValueError as exc:
            raise InvalidRequest(str(exc), device=self._device_id, operation="write") from exc
        await self._link.write_registers(
            start=spec.address, words=words, unit_id=self._unit_id, device=self._device_id
        )
