"""A register map's decoding compiled to one Python function: the poll path's decoder.

`MapDecoder` runs the same `_DecodePlan` steps for every read, branching on each value's kind.
For a map of 16- and 32-bit integers that are scaled by 10**-d or taken as they are (most
devices), this module writes the function those steps amount to: the blocks' words unpacked
into locals, the fault codes checked, and one dict display of divisions. Anything out of the
ordinary (wrong block sizes, a word outside 0..65535, a fault code) goes back to the plan's
steps, so the result and every error are the plan's own.

The source is built from numbers only (indices and counts); names, divisors, fault codes and
the structs reach the function as constants of its namespace, never as text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from struct import Struct, error

#: (values, faults) of one device read
Decoded = tuple[dict[str, float], dict[str, str]]
Decode = Callable[[Sequence[Sequence[int]]], Decoded]


def compile_divisions(
    *,
    counts: Sequence[int],
    words: Struct,
    raws: Struct,
    names: Sequence[str],
    divisors: Sequence[float],
    fault_codes: Sequence[tuple[int, ...]],
    slow: Decode,
) -> Decode:
    """`{names[i]: raw_i / divisors[i]}` of the raw values `raws` unpacks from the packed words,
    with `slow` for what it does not cover (any raw value among its fault codes, sizes, range).

    A scale of 1 divides by 1.0: `raw / 1.0` is `float(raw)` exactly.
    """
    blocks = [f"b{i}" for i in range(len(counts))]
    locals_ = [f"r{i}" for i in range(len(names))]
    sizes = " or ".join(f"len({b}) != {count}" for b, count in zip(blocks, counts, strict=True))
    faulty = [f"r{i} in f{i}" for i, codes in enumerate(fault_codes) if codes]
    source = [
        "def decode(words):",
        f"    if len(words) != {len(counts)}:",
        "        return slow(words)",
        f"    {', '.join(blocks)}, = words",
        f"    if {sizes}:",
        "        return slow(words)",
        "    try:",
        f"        {', '.join(locals_)}, = unpack(pack({', '.join('*' + b for b in blocks)}))",
        "    except error:",
        "        return slow(words)",
    ]
    if faulty:
        source += [f"    if {' or '.join(faulty)}:", "        return slow(words)"]
    items = ", ".join(f"n{i}: r{i} / d{i}" for i in range(len(names)))
    source.append(f"    return {{{items}}}, {{}}")
    namespace: dict[str, object] = {
        "slow": slow,
        "error": error,
        "pack": words.pack,
        "unpack": raws.unpack,
    }
    for i, (name, divisor, codes) in enumerate(zip(names, divisors, fault_codes, strict=True)):
        namespace.update({f"n{i}": name, f"d{i}": divisor, f"f{i}": codes})
    exec("\n".join(source), namespace)  # source of numbers only, see the module docstring
    decode: Decode = namespace["decode"]  # type: ignore[assignment]
    return decode
