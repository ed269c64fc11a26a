"""The Modbus device driver: a register map read and written over a shared `ModbusLink`."""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any

from drivers._errors import InvalidRequest, ProtocolError
from drivers._interface import Reading, new_reading
from drivers.modbus import (
    MapDecoder,
    RegisterSpec,
    decode_block,
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
        self._decoder = MapDecoder(self._blocks)

    @property
    def device_id(self) -> str:
        return self._device_id

    async def connect(self) -> None:
        await self._link.connect(device=self._device_id)

    async def close(self) -> None:
        # The link is shared with other units on the same line; its owner closes it.
        return None

    def read(self) -> Coroutine[Any, Any, Reading]:
        # The link's read itself (`async def read` of the driver interface without a frame of
        # its own: every resume of a poll passes through each frame), decoding with `_decode`.
        return self._link.read(self._reads, device=self._device_id, decode=self._decode)

    def _decode(self, words: list[Sequence[int]]) -> Reading:
        try:
            values, faults = self._decoder.decode(words)
        except ValueError as exc:
            raise self._decode_error(words, exc) from exc
        return new_reading(values, faults)

    def _decode_error(self, words: list[Sequence[int]], exc: ValueError) -> ProtocolError:
        """The error naming the block that held the undecodable value."""
        for block, block_words in zip(self._blocks, words, strict=True):
            try:
                decode_block(block, block_words)
            except ValueError as block_exc:
                return ProtocolError(
                    str(block_exc), device=self._device_id, operation=block.operation
                )
        return ProtocolError(str(exc), device=self._device_id, operation="read")

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
