"""Descent's own words for a 422: each message names the field and the value it got."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable
from typing import Any

from app.store.curve import json_safe
from app.store.tenants import TENANT_NAME_PATTERN, TENANT_NAME_RULE

MAX_SHOWN = 120  # characters of a value echoed back in a message
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(value: Any) -> Any:
    """`value` as strict JSON can carry it: non-finite floats become null and lone UTF-16
    surrogates (which UTF-8 cannot encode) become U+FFFD."""
    value = json_safe(value)
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {clean(key): clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clean(item) for item in value]
    return value


def shown(value: Any) -> str:
    """A value as the client wrote it (JSON: null, true, "text"), shortened."""
    if isinstance(value, float) and not math.isfinite(value):
        return {math.inf: "Infinity", -math.inf: "-Infinity"}.get(value, "NaN")
    if isinstance(value, bytes | bytearray):
        value = bytes(value[:MAX_SHOWN]).decode("utf-8", errors="replace")
    text = json.dumps(clean(value), ensure_ascii=False)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """'; did you mean "x"?' when a known word is close to `word`, else ''."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def _dotted(loc: Iterable[Any]) -> str:
    """("body", "hidden_sizes", 0) -> "hidden_sizes[0]"."""
    text = ""
    for part in loc:
        if part in ("body", "query", "path", "header"):
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _bound(ctx: dict[str, Any]) -> str:
    for key, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if key in ctx:
            return f"{sign} {shown(ctx[key])}"
    return "in range"


# Patterns of our own fields, in words.
PATTERN_WORDS = {
    r"^[\x21-\x7e]+$": "visible ASCII characters (no spaces)",
    r"^[1-9][0-9]{0,17}$": "the next_cursor of an earlier page",
    TENANT_NAME_PATTERN: TENANT_NAME_RULE,
}


def _count(n: Any, unit: str) -> str:
    return f"{n} {unit[:-1]}" if n == 1 else f"{n} {unit}"


def describe(
    error: dict[str, Any], known_fields: Iterable[str] = (), json_body: bool = True
) -> dict[str, Any]:
    """One pydantic error as {loc, msg, type, input}, `msg` in Descent's words.
    `json_body`: whether the request said its body is JSON."""
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path",
                                                                       "header")]
    field = _dotted(error.get("loc", ())) or "the body"
    kind = str(error.get("type"))
    ctx = error.get("ctx") or {}
    value = error.get("input")
    where = error.get("loc", ("body",))[0]
    # Query, header and path values are text as typed: shown bare, not JSON-quoted,
    # unless they are empty or hold spaces.
    raw = (where in ("query", "header", "path") and isinstance(value, str) and value != ""
           and not any(c.isspace() for c in value))
    got = f"got {clean(value)[:MAX_SHOWN]}" if raw else f"got {shown(value)}"
    message = str(error.get("msg", "invalid"))
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == "missing":
        text = f"{field} is required"
    elif kind == "extra_forbidden":
        text = f"{field} is not a known field{did_you_mean(loc[-1] if loc else '', known_fields)}"
    elif kind == "json_invalid":
        where = f" at character {loc[0]}" if loc else ""
        text = f"the body is not valid JSON: {ctx.get('error', message)}{where}"
    elif isinstance(value, bytes | bytearray) or (
        not loc and isinstance(value, str) and not json_body
    ):
        # FastAPI hands over a body it did not parse as JSON as it came.
        if isinstance(value, bytes | bytearray):
            value = bytes(value[:MAX_SHOWN]).decode("utf-8", errors="replace")
        text = (
            "the body must be a JSON object sent with Content-Type: application/json, "
            f"got {value[:MAX_SHOWN]}"
        )
    elif kind in ("model_attributes_type", "dict_type", "model_type"):
        text = f"{field} must be a JSON object, {got}"
    elif kind in ("int_type", "int_from_float", "int_parsing"):
        text = f"{field} must be an integer, {got}"
    elif kind in ("float_type", "float_parsing", "finite_number"):
        text = f"{field} must be a finite number, {got}"
    elif kind in ("string_type", "string_unicode"):
        text = f"{field} must be a string, {got}"
    elif kind == "list_type":
        text = f"{field} must be a list, {got}"
    elif kind == "bool_type":
        text = f"{field} must be true or false, {got}"
    elif kind == "literal_error":
        options = [o.strip().strip("'") for o in str(ctx.get("expected", "")).replace(" or ", ", ")
                   .split(",") if o.strip()]
        hint = did_you_mean(value, options) if isinstance(value, str) else ""
        text = f"{field} must be one of {', '.join(options)}, {got}{hint}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        text = f"{field} must be {_bound(ctx)}, {got}"
    elif kind in ("too_short", "too_long", "string_too_short", "string_too_long"):
        unit = "characters" if isinstance(value, str) else "items"
        if "max_length" in ctx:
            text = f"{field} must have at most {_count(ctx['max_length'], unit)}, {got}"
        else:
            text = f"{field} must have at least {_count(ctx.get('min_length', 1), unit)}, {got}"
    elif kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        text = f"{field} must be {PATTERN_WORDS.get(pattern, f'text matching {pattern}')}, {got}"
    elif message.startswith(loc[0] if loc else field):
        text = message  # already in our words (a validator of ours)
    else:
        text = f"{field}: {message}, {got}"
    out: dict[str, Any] = {"loc": list(error.get("loc", ())), "msg": clean(text), "type": kind}
    # A missing field has no value, and FastAPI's placeholder for unparsable JSON is {}.
    if "input" in error and kind not in ("missing", "json_invalid"):
        out["input"] = clean(value)
    return out
