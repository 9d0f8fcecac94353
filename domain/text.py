"""Text the service accepts from people: no control characters, and free-form JSON with bounds.

A NUL character cannot be stored in PostgreSQL text, so one in a comment used to stop a regime's effects
for good (issue 12); the other control characters (and lone UTF-16 surrogates, which cannot be encoded
as UTF-8) have no business in a plan, a reason or a name either. Tab, newline and carriage return stay
allowed: a browser's text area sends CR LF line ends.

`text(max_length)` is the one annotated type every text field of a request or a message uses, so every
string in the API has its limit next to its name.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints
from pydantic_core import PydanticCustomError
from temporalio import workflow

# C0 controls but tab (09), newline (0A) and carriage return (0D); DEL; C1 controls; lone surrogates.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

# Free-form JSON objects (a decision's payload before its step's model is known): bounds on shape, so
# no dict can carry more than its typed model could, whatever it contains.
JSON_MAX_DEPTH = 8
JSON_MAX_NODES = 20_000
JSON_MAX_KEY_LENGTH = 100
JSON_MAX_STRING_LENGTH = 8000


def no_control_characters(value: str) -> str:
    if workflow.in_workflow():
        # The door is the API. Inside a workflow a message is decoded from its history, and what a history
        # holds must always decode again on replay: text accepted before this rule existed included.
        return value
    m = _FORBIDDEN.search(value)
    if m is not None:
        raise PydanticCustomError(
            "control_character",
            "control character U+{code} at position {position} is not allowed (only tab, newline and "
            "carriage return)", {"code": f"{ord(m.group()):04X}", "position": m.start()})
    return value


def text(max_length: int, *, min_length: int = 0) -> Any:
    """A string of at most `max_length` characters (Unicode code points) without control characters.

    The length bounds come before the character check in the annotation so pydantic applies them as string
    constraints (message "String should have at most N characters", `maxLength` in the OpenAPI schema)."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length),
                     AfterValidator(no_control_characters)]


def json_error(value: Any, *, text: bool = True) -> tuple[tuple[str | int, ...], PydanticCustomError] | None:
    """The first thing wrong with a free-form JSON value and where it is (a path of keys and indexes): more
    than JSON_MAX_DEPTH levels or JSON_MAX_NODES values, a key or string too long, or (with `text`) a control
    character in a key or a string."""
    nodes = 0
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        v, path = stack.pop()
        nodes += 1
        if nodes > JSON_MAX_NODES:
            return path, PydanticCustomError("json_too_large", "more than {n} values", {"n": JSON_MAX_NODES})
        if len(path) > JSON_MAX_DEPTH:
            return path, PydanticCustomError("json_too_deep", "nested deeper than {n} levels", {"n": JSON_MAX_DEPTH})
        try:
            if isinstance(v, str):
                if len(v) > JSON_MAX_STRING_LENGTH:
                    return path, PydanticCustomError("string_too_long", "String should have at most {n} "
                                                     "characters", {"n": JSON_MAX_STRING_LENGTH})
                if text:
                    no_control_characters(v)
            elif isinstance(v, dict):
                for k, item in v.items():
                    if not isinstance(k, str) or len(k) > JSON_MAX_KEY_LENGTH:
                        return path, PydanticCustomError("key_too_long", "a key longer than {n} characters",
                                                         {"n": JSON_MAX_KEY_LENGTH})
                    if text:
                        no_control_characters(k)
                    stack.append((item, (*path, k)))
            elif isinstance(v, list):
                stack.extend((item, (*path, i)) for i, item in enumerate(v))
        except PydanticCustomError as e:
            return path, e
    return None


def bounded_json(value: Any) -> Any:
    if workflow.in_workflow():  # as no_control_characters: histories must replay
        return value
    found = json_error(value)
    if found is not None:
        path, err = found
        where = ".".join(str(p) for p in path)
        raise PydanticCustomError(err.type, (f"at {where}: " if where else "") + err.message())
    return value


# A JSON object bounded in shape and free of control characters (a message the workflows receive).
JsonObject = Annotated[dict[str, Any], AfterValidator(bounded_json)]
