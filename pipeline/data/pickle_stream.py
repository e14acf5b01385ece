"""Read the data out of a pickle stream without unpickling it.

The project never unpickles: `pickle.load` can run arbitrary code. CIFAR's python
distribution is a set of pickled dicts (written by Python 2's cPickle) holding numpy
arrays, lists of ints and strings. This module walks the opcodes with
`pickletools.genops`, which only parses, and evaluates them on a small stack machine of
its own in which a global is an inert `(module, name)` record and a call is an inert
record of the callable and its arguments. Nothing is imported or called. Afterwards
`plain()` turns the records it recognises (numpy arrays, numpy dtypes, Python 3's
`_codecs.encode` for bytes) into values, and refuses anything else.
"""

from __future__ import annotations

import io
import pickletools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import UserError


@dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclass(eq=False)
class Call:
    """`func(*args)` as written in the stream, never performed; BUILD sets `state`."""

    func: Any
    args: tuple
    state: Any = field(default=None)


class _Mark:
    pass


MARK = _Mark()
_LATIN1 = {"STRING", "BINSTRING", "SHORT_BINSTRING"}  # Python 2 str: bytes, shown by genops as latin-1 text
_IGNORED = {"PROTO", "FRAME", "STOP"}


class _Machine:
    def __init__(self, where: str):
        self.where = where
        self.stack: list[Any] = []
        self.memo: dict[int, Any] = {}

    def fail(self, what: str) -> UserError:
        return UserError(f"{self.where}: {what}; refused")

    def pop_mark(self) -> list[Any]:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] is MARK:
                items = self.stack[i + 1 :]
                del self.stack[i:]
                return items
        raise self.fail("malformed pickle (no MARK)")

    def run(self, data: bytes) -> Any:
        s = self.stack
        try:
            for op, arg, _ in pickletools.genops(io.BytesIO(data)):
                name = op.name
                if name in _IGNORED:
                    continue
                if name in _LATIN1:
                    s.append(Latin1(arg))
                elif name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
                              "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
                              "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
                    s.append(arg)
                elif name == "NONE":
                    s.append(None)
                elif name in ("NEWTRUE", "NEWFALSE"):
                    s.append(name == "NEWTRUE")
                elif name == "MARK":
                    s.append(MARK)
                elif name in ("EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE"):
                    s.append({"EMPTY_DICT": dict, "EMPTY_LIST": list, "EMPTY_TUPLE": tuple}[name]())
                elif name in ("DICT", "LIST", "TUPLE"):
                    items = self.pop_mark()
                    s.append(_pairs(items) if name == "DICT" else (items if name == "LIST" else tuple(items)))
                elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                    n = int(name[-1])
                    items = tuple(s[-n:])
                    del s[-n:]
                    s.append(items)
                elif name == "APPEND":
                    value = s.pop()
                    s[-1].append(value)
                elif name == "APPENDS":
                    items = self.pop_mark()
                    s[-1].extend(items)
                elif name == "SETITEM":
                    value, key = s.pop(), s.pop()
                    s[-1][_key(key)] = value
                elif name == "SETITEMS":
                    pairs = _pairs(self.pop_mark())
                    s[-1].update(pairs)
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    self.memo[int(arg)] = s[-1]
                elif name == "MEMOIZE":
                    self.memo[len(self.memo)] = s[-1]
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    s.append(self.memo[int(arg)])
                elif name == "GLOBAL":
                    module, _, attr = arg.partition(" ")
                    s.append(Global(module, attr))
                elif name == "STACK_GLOBAL":
                    attr, module = s.pop(), s.pop()
                    s.append(Global(str(module), str(attr)))
                elif name in ("REDUCE", "NEWOBJ"):
                    args, func = s.pop(), s.pop()
                    s.append(Call(func, tuple(args)))
                elif name == "BUILD":
                    state = s.pop()
                    if not isinstance(s[-1], Call):
                        raise self.fail("BUILD on something that is not an object")
                    s[-1].state = state
                elif name == "POP":
                    s.pop()
                elif name == "POP_MARK":
                    self.pop_mark()
                elif name == "DUP":
                    s.append(s[-1])
                else:
                    raise self.fail(f"unsupported pickle opcode {name}")
        except (ValueError, IndexError, KeyError, TypeError, AttributeError) as err:
            raise self.fail(f"malformed pickle ({type(err).__name__}: {err})") from None
        if len(s) != 1:
            raise self.fail("malformed pickle (stack does not hold one value at STOP)")
        return s[0]


class Latin1(str):
    """A Python 2 `str` (bytes); genops shows it decoded as latin-1."""

    def raw(self) -> bytes:
        return self.encode("latin-1")


def _key(key: Any) -> Any:
    """Dict keys as text: Python 2 str keys arrive as `Latin1`, Python 3 bytes keys as bytes."""
    return key.decode("latin-1") if isinstance(key, bytes) else key


def _pairs(items: list[Any]) -> dict:
    if len(items) % 2:
        raise ValueError("odd number of items for a dict")
    return {_key(items[i]): items[i + 1] for i in range(0, len(items), 2)}


_NUMPY_RECONSTRUCT = {Global("numpy.core.multiarray", "_reconstruct"), Global("numpy._core.multiarray", "_reconstruct")}
_NDARRAY = Global("numpy", "ndarray")
_DTYPE = Global("numpy", "dtype")
_CODECS_ENCODE = Global("_codecs", "encode")
_NUMERIC_KINDS = set("biuf")


def _as_bytes(value: Any, where: str) -> bytes:
    value = plain(value, where)
    if isinstance(value, Latin1):
        return value.raw()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise UserError(f"{where}: expected raw bytes in the pickle, found {type(value).__name__}; refused")


def _dtype(obj: Any, where: str) -> np.dtype:
    if not (isinstance(obj, Call) and obj.func == _DTYPE and obj.args and isinstance(obj.args[0], str)):
        raise UserError(f"{where}: array with an unrecognised dtype; refused")
    dtype = np.dtype(str(obj.args[0]))
    state = obj.state
    if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">"):
        dtype = dtype.newbyteorder(state[1])
    if dtype.kind not in _NUMERIC_KINDS:
        raise UserError(f"{where}: array of dtype {dtype} (only numbers are read); refused")
    return dtype


def _ndarray(obj: Call, where: str) -> np.ndarray:
    if not (obj.args and obj.args[0] == _NDARRAY and isinstance(obj.state, tuple) and len(obj.state) == 5):
        raise UserError(f"{where}: unrecognised numpy array layout in the pickle; refused")
    _, shape, dtype, fortran, raw = obj.state
    dtype = _dtype(dtype, where)
    shape = tuple(int(n) for n in shape)
    data = _as_bytes(raw, where)
    if len(data) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise UserError(f"{where}: array data of {len(data)} bytes does not fill shape {shape} of {dtype}")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


def plain(obj: Any, where: str) -> Any:
    """Replace recognised records by values (arrays, bytes); refuse every other global or call."""
    if isinstance(obj, dict):
        return {_key(plain(k, where)): plain(v, where) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v, where) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain(v, where) for v in obj)
    if isinstance(obj, Call):
        if obj.func in _NUMPY_RECONSTRUCT:
            return _ndarray(obj, where)
        if obj.func == _CODECS_ENCODE and len(obj.args) == 2 and obj.args[1] == "latin1":
            return str(obj.args[0]).encode("latin-1")
        func = obj.func
        named = f"{func.module}.{func.name}" if isinstance(func, Global) else type(func).__name__
        raise UserError(f"{where}: the pickle calls {named}, which is not plain data; refused")
    if isinstance(obj, Global):
        raise UserError(f"{where}: the pickle refers to {obj.module}.{obj.name}, which is not plain data; refused")
    return obj


def read_pickle_data(data: bytes, where: str) -> Any:
    """The plain data (dicts, lists, numbers, strings, numpy arrays) a pickle stream describes."""
    return plain(_Machine(where).run(data), where)
