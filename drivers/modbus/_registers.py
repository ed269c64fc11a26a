"""Register maps: how a Modbus device's registers become named values, and back.

Pure code (no I/O): the register model a config file declares, the planner that groups a map into
as few read requests as possible, and the codec between 16-bit words and engineering values.
The simulators use the same codec to serve what the driver reads.
"""

from __future__ import annotations

import functools
import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain
from struct import Struct
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.modbus._compiled import Decode, Decoded, compile_divisions

RegisterTable = Literal["holding", "input"]
RegisterType = Literal["int16", "uint16", "int32", "uint32", "float32"]
WordOrder = Literal["big", "little"]

#: A Modbus read may ask for at most 125 registers (Modbus application protocol v1.1b3, 6.3).
MAX_READ_REGISTERS = 125
#: Registers skipped between two map entries that are still read in one request: reading a few
#: unused registers is far cheaper than another round trip on a 19200 baud line.
MAX_GAP_REGISTERS = 8

_VALUE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
_RAW_RANGE = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}


class RegisterSpec(BaseModel):
    """One named value in a device's register map."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        description="Value name published in telemetry, with its unit as suffix "
        "(temperature_c, setpoint_c, door_open, alarm_bits)."
    )
    address: int = Field(ge=0, le=65535, description="Zero-based register address.")
    table: RegisterTable = Field(default="holding", description="Holding or input registers.")
    type: RegisterType = Field(default="int16", description="How the raw word(s) are read.")
    word_order: WordOrder = Field(
        default="big", description="For 32-bit types: 'big' puts the high word first."
    )
    scale: float = Field(default=1.0, description="value = raw * scale + offset.")
    offset: float = Field(default=0.0, description="value = raw * scale + offset.")
    writable: bool = Field(default=False, description="May be written (holding registers only).")
    fault_codes: tuple[int, ...] = Field(
        default=(),
        description="Raw values that mean 'no valid reading' (a probe's open-circuit or "
        "out-of-range code): reported as a sensor fault, never as a value.",
    )
    stale_after_s: float | None = Field(
        default=None,
        gt=0,
        description="An analogue value that stays bit-for-bit identical this long is stale "
        "(a frozen sensor or a hung controller); unset for state values such as door_open.",
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not _VALUE_NAME.match(name):
            raise ValueError("must be lower_snake_case with its unit as suffix, e.g. temperature_c")
        return name

    @field_validator("scale")
    @classmethod
    def _check_scale(cls, scale: float) -> float:
        if scale == 0 or not math.isfinite(scale):
            raise ValueError("must be a finite, non-zero number")
        return scale

    @model_validator(mode="after")
    def _check_consistency(self) -> RegisterSpec:
        if self.writable and self.table != "holding":
            raise ValueError("only holding registers can be writable")
        if self.address + self.width > 65536:
            raise ValueError(f"a {self.type} at {self.address} runs past register 65535")
        if self.type in _RAW_RANGE:
            low, high = _RAW_RANGE[self.type]
            bad = [code for code in self.fault_codes if not low <= code <= high]
            if bad:
                raise ValueError(f"fault_codes {bad} do not fit a {self.type}")
        return self

    @property
    def width(self) -> int:
        """Number of 16-bit registers the value occupies."""
        return _WIDTH[self.type]

    @property
    def decimals(self) -> int:
        """Decimal places an integer register carries after scale and offset (0.1 -> 1)."""
        return _decimals(self.scale, self.offset)


@functools.cache
def _decimals(scale: float, offset: float) -> int:
    # Cached: every poll decodes every value, and Decimal arithmetic is not cheap.
    exponents = [Decimal(repr(x)).normalize().as_tuple().exponent for x in (scale, offset)]
    return max(0, *(-int(e) for e in exponents if isinstance(e, int)))


def check_register_map(registers: Sequence[RegisterSpec]) -> list[str]:
    """Return one message per problem in a map: duplicate names or overlapping registers."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    used: dict[tuple[str, int], str] = {}
    for index, reg in enumerate(registers):
        if reg.name in seen:
            problems.append(
                f"registers[{index}].name: '{reg.name}' is already registers[{seen[reg.name]}]"
            )
        seen.setdefault(reg.name, index)
        for addr in range(reg.address, reg.address + reg.width):
            owner = used.get((reg.table, addr))
            if owner is not None and owner != reg.name:
                problems.append(
                    f"registers[{index}].address: {reg.table} register {addr} is "
                    f"also used by '{owner}'"
                )
                break
            used[(reg.table, addr)] = reg.name
    return problems


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: `count` registers of `table` from `start`, and what they hold."""

    table: RegisterTable
    start: int
    count: int
    registers: tuple[RegisterSpec, ...]
    #: the request as errors name it: 'read holding 0'
    operation: str = field(init=False, repr=False, compare=False)
    #: how `decode_block` turns this block's words into values, worked out once
    _plan: _DecodePlan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "operation", f"read {self.table} {self.start}")
        object.__setattr__(self, "_plan", _DecodePlan.of((self,)))


def plan_reads(registers: Iterable[RegisterSpec]) -> list[ReadBlock]:
    """Group a register map into the fewest read requests (contiguous, gaps up to 8 words)."""
    blocks: list[ReadBlock] = []
    for table in ("holding", "input"):
        regs = sorted((r for r in registers if r.table == table), key=lambda r: r.address)
        current: list[RegisterSpec] = []
        start = end = 0
        for reg in regs:
            reg_end = reg.address + reg.width
            fits = (
                current
                and reg.address - end <= MAX_GAP_REGISTERS
                and max(end, reg_end) - start <= MAX_READ_REGISTERS
            )
            if fits:
                current.append(reg)
                end = max(end, reg_end)
                continue
            if current:
                blocks.append(ReadBlock(table, start, end - start, tuple(current)))
            current, start, end = [reg], reg.address, reg_end
        if current:
            blocks.append(ReadBlock(table, start, end - start, tuple(current)))
    return blocks


class SensorFault(ValueError):
    """A register held one of its fault codes: the sensor has no valid reading."""

    def __init__(self, name: str, raw: int) -> None:
        super().__init__(f"{name}: sensor fault code {raw}")
        self.name = name
        self.raw = raw


def _words_to_raw(spec: RegisterSpec, words: Sequence[int]) -> int | float:
    if spec.width == 1:
        raw = words[0] & 0xFFFF
        return raw - 0x10000 if spec.type == "int16" and raw >= 0x8000 else raw
    high, low = (words[0], words[1]) if spec.word_order == "big" else (words[1], words[0])
    data = struct.pack(">HH", high & 0xFFFF, low & 0xFFFF)
    fmt = {"int32": ">i", "uint32": ">I", "float32": ">f"}[spec.type]
    value: int | float = struct.unpack(fmt, data)[0]
    return value


def decode_value(spec: RegisterSpec, words: Sequence[int]) -> float:
    """Turn the register words of one value into its engineering value.

    Raises SensorFault when the raw value is one of the spec's fault codes, and ValueError when
    a float32 holds NaN or infinity (never a measurement).
    """
    raw = _words_to_raw(spec, words)
    if isinstance(raw, int) and raw in spec.fault_codes:
        raise SensorFault(spec.name, raw)
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise ValueError(f"{spec.name}: register holds {raw}, not a number")
        # A float32 carries about 7 significant digits; more would be conversion noise.
        return float(f"{raw * spec.scale + spec.offset:.7g}")
    # Scaling an integer by 0.1 gives -79.80000000000001; the register holds exactly -79.8.
    return round(raw * spec.scale + spec.offset, spec.decimals)


def decode_block(block: ReadBlock, words: Sequence[int]) -> tuple[dict[str, float], dict[str, str]]:
    """Decode one read block into (values, faults) where faults maps name -> reason.

    Same results as `decode_value` on each register, in one pass: every poll decodes every block.
    """
    values: dict[str, float] = {}
    faults: dict[str, str] = {}
    decode_block_into(block, words, values, faults)
    return values, faults


def decode_block_into(
    block: ReadBlock, words: Sequence[int], values: dict[str, float], faults: dict[str, str]
) -> None:
    """`decode_block` adding to a device's `values` and `faults` (one pair for all its blocks)."""
    if len(words) != block.count:
        raise ValueError(
            f"expected {block.count} registers from {block.table} {block.start}, got {len(words)}"
        )
    block._plan.decode((words,), values, faults)


class MapDecoder:
    """Decodes all the read blocks of a device (as `plan_reads` made them) in one pass.

    What `decode_block` on each block gives, merged, with one struct round trip for the whole
    map: every poll decodes every block. A ValueError does not say which block held the bad
    value; `decode_block` on each does.
    """

    __slots__ = ("_counts", "_plan", "decode")

    #: (values, faults) from each block's words, in the blocks' order: the plan's steps, or
    #: the function they amount to where `compile_divisions` covers the map
    decode: Decode

    def __init__(self, blocks: Sequence[ReadBlock]) -> None:
        self._counts = [block.count for block in blocks]
        self._plan = _DecodePlan.of(tuple(blocks))
        self.decode = self._plan.compiled(self._counts, self._decode_steps) or self._decode_steps

    def _decode_steps(self, words: Sequence[Sequence[int]]) -> Decoded:
        if [*map(len, words)] != self._counts:
            raise ValueError(f"expected {self._counts} registers, got {[*map(len, words)]}")
        values: dict[str, float] = {}
        faults: dict[str, str] = {}
        self._plan.decode(words, values, faults)
        return values, faults


#: How a raw value from the block's struct becomes a value (see `_DecodePlan`).
_INT, _INT_AS_IS, _INT_DIVIDED, _FLOAT, _SWAPPED_UINT, _SWAPPED_INT, _SWAPPED_FLOAT = range(7)
#: Scales 10**-d and their divisors: `raw / 10**d` is exactly `round(raw * 10**-d, d)` for
#: every 32-bit raw value (the quotient is the double nearest to the d-decimal result, which
#: is what `round` returns), and one division is several times cheaper than `round`.
_DIVISORS = {float(f"1e-{d}"): float(10**d) for d in range(1, 6)}
_SWAPPED = {"uint32": _SWAPPED_UINT, "int32": _SWAPPED_INT, "float32": _SWAPPED_FLOAT}
_FORMATS = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}
_FLOAT32 = Struct(">f")
_UINT32 = Struct(">I")

#: name, how (`_INT`...), scale (the divisor for `_INT_DIVIDED`), offset, decimals, fault codes
_Step = tuple[str, int, float, float, int, tuple[int, ...]]


class _DecodePlan:
    """Whole blocks in one `struct.unpack` (one raw value per register), then scaling.

    32-bit values stored low word first are unpacked as one big-endian 32-bit word and have
    their halves swapped here. Blocks whose registers overlap (a map `check_register_map`
    rejects) cannot be read in one pass; they fall back to `decode_value` register by register.
    """

    __slots__ = ("_blocks", "_raws", "_steps", "_words")

    def __init__(
        self, blocks: tuple[ReadBlock, ...], steps: tuple[_Step, ...] | None, raws: str
    ) -> None:
        self._blocks = blocks
        self._steps = steps
        self._words = Struct(f">{sum(block.count for block in blocks)}H")
        self._raws = Struct(raws)

    def compiled(self, counts: Sequence[int], slow: Decode) -> Decode | None:
        """These steps as one function (`compile_divisions`), when every value is an integer
        scaled by 10**-d or taken as it is; None otherwise."""
        steps = self._steps
        if not steps or any(how not in (_INT_DIVIDED, _INT_AS_IS) for _, how, *_ in steps):
            return None
        return compile_divisions(
            counts=counts,
            words=self._words,
            raws=self._raws,
            names=[name for name, *_ in steps],
            divisors=[scale if how == _INT_DIVIDED else 1.0 for _, how, scale, *_ in steps],
            fault_codes=[codes for *_, codes in steps],
            slow=slow,
        )

    @classmethod
    def of(cls, blocks: tuple[ReadBlock, ...]) -> _DecodePlan:
        fmt = [">"]
        steps: list[_Step] = []
        for block in blocks:
            if not cls._plan_block(block, fmt, steps):
                return cls(blocks, None, ">")
        return cls(blocks, tuple(steps), "".join(fmt))

    @staticmethod
    def _plan_block(block: ReadBlock, fmt: list[str], steps: list[_Step]) -> bool:
        """Add the block's formats and steps; False when its registers overlap."""
        position = block.start
        for spec in block.registers:
            if spec.address < position:
                return False
            fmt.append("xx" * (spec.address - position))
            position = spec.address + spec.width
            if spec.width == 2 and spec.word_order == "little":
                fmt.append("I")
                how = _SWAPPED[spec.type]
            else:
                fmt.append(_FORMATS[spec.type])
                how = _FLOAT if spec.type == "float32" else _INT
            scale = spec.scale
            if how == _INT and spec.offset == 0:
                if scale == 1:
                    how = _INT_AS_IS
                elif scale in _DIVISORS:
                    how, scale = _INT_DIVIDED, _DIVISORS[scale]
            steps.append((spec.name, how, scale, spec.offset, spec.decimals, spec.fault_codes))
        fmt.append("xx" * (block.start + block.count - position))
        return True

    def decode(
        self, words: Sequence[Sequence[int]], values: dict[str, float], faults: dict[str, str]
    ) -> None:
        """Each block's words (counts checked by the caller) into `values` and `faults`."""
        if self._steps is None:
            for block, block_words in zip(self._blocks, words, strict=True):
                self._decode_each(block, block_words, values, faults)
            return
        try:
            data = self._words.pack(*chain.from_iterable(words))
        except struct.error:  # words outside 0..65535: only their low 16 bits count
            data = self._words.pack(*(word & 0xFFFF for word in chain.from_iterable(words)))
        raw: int | float
        for (name, how, scale, offset, decimals, fault_codes), raw in zip(
            self._steps, self._raws.unpack(data), strict=True
        ):
            if how <= _INT_DIVIDED:  # 16-bit and big-endian 32-bit integers: most values
                if raw in fault_codes:
                    faults[name] = str(SensorFault(name, int(raw)))
                elif how == _INT_DIVIDED:
                    values[name] = raw / scale  # `scale` holds the divisor
                elif how == _INT_AS_IS:
                    values[name] = float(raw)
                else:
                    values[name] = round(raw * scale + offset, decimals)
                continue
            if how >= _SWAPPED_UINT:
                whole = int(raw)
                raw = ((whole & 0xFFFF) << 16) | (whole >> 16)
                if how == _SWAPPED_INT and raw >= 0x80000000:
                    raw -= 0x100000000
                elif how == _SWAPPED_FLOAT:
                    raw = _FLOAT32.unpack(_UINT32.pack(raw))[0]
                    how = _FLOAT
            if how == _FLOAT:
                if not math.isfinite(raw):
                    raise ValueError(f"{name}: register holds {raw}, not a number")
                # A float32 carries about 7 significant digits; more would be conversion noise.
                values[name] = float(f"{raw * scale + offset:.7g}")
            elif raw in fault_codes:
                faults[name] = str(SensorFault(name, int(raw)))
            else:
                values[name] = round(raw * scale + offset, decimals)

    @staticmethod
    def _decode_each(
        block: ReadBlock, words: Sequence[int], values: dict[str, float], faults: dict[str, str]
    ) -> None:
        for spec in block.registers:
            offset = spec.address - block.start
            try:
                values[spec.name] = decode_value(spec, words[offset : offset + spec.width])
            except SensorFault as exc:
                faults[spec.name] = str(exc)


def encode_value(spec: RegisterSpec, value: float) -> list[int]:
    """Turn an engineering value into the register words that hold it (the inverse of decode).

    Raises ValueError when the value does not fit the register type after scaling.
    """
    if not math.isfinite(value):
        raise ValueError(f"{spec.name}: {value} is not a finite number")
    raw_float = (value - spec.offset) / spec.scale
    if spec.type == "float32":
        data = struct.pack(">f", raw_float)
    else:
        raw = round(raw_float)
        low, high = _RAW_RANGE[spec.type]
        if not low <= raw <= high:
            raise ValueError(
                f"{spec.name}: {value} is outside what a {spec.type} register "
                f"holds at scale {spec.scale} and offset {spec.offset}"
            )
        if spec.width == 1:
            return [raw & 0xFFFF]
        data = struct.pack(">i" if spec.type == "int32" else ">I", raw)
    high_word, low_word = struct.unpack(">HH", data)
    return [high_word, low_word] if spec.word_order == "big" else [low_word, high_word]


def encode_raw(spec: RegisterSpec, raw: int) -> list[int]:
    """Register words holding a raw integer as is (fault codes, which bypass scaling)."""
    if spec.type == "float32":
        raise ValueError(f"{spec.name}: float32 registers have no integer fault codes")
    low, high = _RAW_RANGE[spec.type]
    if not low <= raw <= high:
        raise ValueError(f"{spec.name}: raw {raw} does not fit a {spec.type}")
    if spec.width == 1:
        return [raw & 0xFFFF]
    data = struct.pack(">i" if spec.type == "int32" else ">I", raw)
    high_word, low_word = struct.unpack(">HH", data)
    return [high_word, low_word] if spec.word_order == "big" else [low_word, high_word]


def values_by_name(registers: Iterable[RegisterSpec]) -> Mapping[str, RegisterSpec]:
    """Index a register map by value name."""
    return {reg.name: reg for reg in registers}
