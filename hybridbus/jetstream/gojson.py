"""Request bodies read the way nats-server's Go decoder reads them.

nats-server decodes an API request into a Go struct: a value of the wrong JSON type, a
number that does not fit the field (``1.5`` or ``1e3`` for an integer, ``-1`` for an
unsigned one, anything past 64 bits) or, in strict mode (``jetstream { strict: true }``,
the default), a field the struct does not have, is a 400 with err_code 10025 and the
decoder's words after ``invalid JSON: ``. ``decode`` checks a parsed body against a
schema and raises that error with the same text, so a client sees what it would see
from nats-server. ``null`` is accepted anywhere (Go leaves the zero value).

A schema maps a JSON key to a type: ``"string"``, ``"bool"``, ``"int"`` (64-bit),
``"int32"``, ``"int64"``, ``"uint64"``, ``"duration"`` (int64 nanoseconds),
``"time"`` (RFC 3339), ``List(t)``, ``Map(t)`` (string keys), ``Struct(goname,
schema)`` or ``Enum(values, message)`` (a Go type with its own UnmarshalJSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hybridbus.jetstream.api import ApiError
from hybridbus.store.api import parse_rfc3339

_INT_RANGES = {
    "int": (-(1 << 63), (1 << 63) - 1, "int"),
    "int64": (-(1 << 63), (1 << 63) - 1, "int64"),
    "duration": (-(1 << 63), (1 << 63) - 1, "time.Duration"),
    "int32": (-(1 << 31), (1 << 31) - 1, "int32"),
    "uint64": (0, (1 << 64) - 1, "uint64"),
}
_MAX_BODY_DEPTH = 64  # far beyond any real request; deeper is refused, not recursed


@dataclass(frozen=True)
class List:
    item: Any


@dataclass(frozen=True)
class Map:
    item: Any


@dataclass(frozen=True)
class Struct:
    goname: str
    fields: dict


@dataclass(frozen=True)
class Enum:
    values: tuple
    message: str = ""  # "" -> Go's "can not unmarshal <raw>"


class _Num(str):
    """A JSON number kept as its literal (Go quotes it in its errors)."""


def invalid_json(text: str) -> ApiError:
    return ApiError(400, 10025, f"invalid JSON: {text}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def parse(payload: bytes) -> Any:
    """The JSON value of a body (numbers as ``_Num`` literals); 10025 when not JSON."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_json("invalid UTF-8 in request") from None
    if _too_deep(text):
        raise invalid_json("exceeded max depth")
    try:
        return json.loads(text, parse_int=_Num, parse_float=_Num, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as err:
        raise invalid_json(str(err)) from None


def _too_deep(text: str) -> bool:
    """Nesting past ``_MAX_BODY_DEPTH`` (json.loads would recurse through it). Counting
    brackets first keeps ordinary bodies cheap; the scan skips strings."""
    if text.count("[") + text.count("{") < _MAX_BODY_DEPTH:
        return False
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > _MAX_BODY_DEPTH:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def _raw(v: Any) -> str:
    """The JSON text of a parsed value (a Go UnmarshalJSON sees the raw bytes)."""
    if isinstance(v, _Num):
        return str(v)
    if isinstance(v, list):
        return "[" + ",".join(_raw(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_raw(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


def _kind(v: Any) -> str:
    if isinstance(v, _Num):
        return "number"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "value"


def _goname(t: Any) -> str:
    if isinstance(t, str):
        return {"string": "string", "bool": "bool", "time": "time.Time"}.get(t) or _INT_RANGES[t][2]
    if isinstance(t, List):
        inner = _goname(t.item)
        return "[]*" + inner if isinstance(t.item, Struct) else "[]" + inner
    if isinstance(t, Map):
        return "map[string]" + _goname(t.item)
    if isinstance(t, Struct):
        return t.goname
    return "string"


def _mismatch(v: Any, t: Any, path: str, literal: bool = False) -> ApiError:
    what = f"number {v}" if literal else _kind(v)
    # Go names a struct field "Go struct field X.f"; an array element just "X.f.0".
    where = path if path.rsplit(".", 1)[-1].isdigit() else f"Go struct field {path}"
    return invalid_json(f"json: cannot unmarshal {what} into {where} of type {_goname(t)}")


def _value(v: Any, t: Any, path: str, strict: bool) -> Any:
    if v is None:
        return None
    if isinstance(t, Enum):
        if isinstance(v, str) and not isinstance(v, _Num) and v in t.values:
            return v
        raise invalid_json(t.message or f"can not unmarshal {json.dumps(_raw(v))}")
    if isinstance(t, Struct):
        if not isinstance(v, dict):
            raise _mismatch(v, t, path)
        return _struct(v, t, path, strict)
    if isinstance(t, List):
        if not isinstance(v, list):
            raise _mismatch(v, t, path)
        return [_value(x, t.item, f"{path}.{i}", strict) for i, x in enumerate(v)]
    if isinstance(t, Map):
        if not isinstance(v, dict):
            raise _mismatch(v, t, path)
        return {k: _value(x, t.item, f"{path}.{k}", strict) for k, x in v.items()}
    if t == "string":
        if not isinstance(v, str) or isinstance(v, _Num):
            raise _mismatch(v, t, path)
        return str(v)
    if t == "bool":
        if not isinstance(v, bool):
            raise _mismatch(v, t, path)
        return v
    if t == "time":
        if not isinstance(v, str) or isinstance(v, _Num):
            raise _mismatch(v, t, path)
        try:
            parse_rfc3339(v)
        except ValueError:
            raise invalid_json(f'parsing time "{v}" as RFC 3339: cannot parse') from None
        return str(v)
    lo, hi, _go = _INT_RANGES[t]
    if not isinstance(v, _Num):
        raise _mismatch(v, t, path)
    try:
        n = int(v)
    except ValueError:
        raise _mismatch(v, t, path, literal=True) from None
    if not lo <= n <= hi:
        raise _mismatch(v, t, path, literal=True)
    return n


def _struct(obj: dict, t: Struct, path: str, strict: bool) -> dict:
    out: dict[str, Any] = {}
    for key, v in obj.items():
        ft = t.fields.get(key)
        if ft is None:
            if strict:
                raise invalid_json(f'json: unknown field "{key}"')
            continue
        out[key] = _value(v, ft, f"{path}.{key}", strict)
    return out


def decode(payload: bytes, schema: Struct, strict: bool, top: str = "") -> dict:
    """A request body checked against ``schema``: a dict of the keys it had (values
    converted: numbers to int, the rest as JSON gave them). An empty body is ``{}``.
    ``top`` names the Go request type in errors (default: the schema's name)."""
    if not payload.strip():
        return {}
    value = parse(payload)
    name = top or schema.goname.rsplit(".", 1)[-1]
    if not isinstance(value, dict):
        if value is None:
            return {}
        raise invalid_json(
            f"json: cannot unmarshal {_kind(value)} into Go value of type server.{name}"
        )
    return _struct(value, schema, name, strict)


def decode_object(payload: bytes, schema: Struct, strict: bool) -> dict:
    """As ``decode``, for the handlers that read a body only when it starts like a
    JSON object or array (nats-server's isJSONObjectOrArray: ``STREAM.INFO``, ``NAMES``,
    ``LIST``, ``PURGE``): anything else (``5``, ``null``, binary) counts as empty."""
    data = payload.lstrip()
    if data[:1] not in (b"{", b"["):
        return {}
    return decode(data, schema, strict)


def is_empty_request(payload: bytes) -> bool:
    """nats-server's isEmptyRequest: no body, or a JSON object with no keys."""
    data = payload.strip()
    if not data:
        return True
    if not data.startswith(b"{"):
        return False
    try:
        return json.loads(data) == {}
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
