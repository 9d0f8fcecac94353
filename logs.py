"""Logs of the API, the worker and the run command: one configuration, structlog's, for every logger.

`configure()` puts one handler on the root logger whose formatter is structlog's `ProcessorFormatter`, so a
record from any library (uvicorn, temporalio, asyncpg, our own `logging.getLogger(...)` calls) and an event
from a structlog logger go through the same processors and the same renderer:

- `LOG_FORMAT=json` (the default): one JSON object per line, `timestamp` (ISO 8601, UTC), `level`, `logger`,
  `event`, then the context: what `structlog.contextvars` holds (the API binds `request_id`, `regime_id`,
  `workflow_id`, `user_id` for each request, api/requestlog.py), what a record carries in `extra` (the
  Temporal SDK's `temporal_workflow` and `temporal_activity`, from which `workflow_id` is lifted), and an
  exception's traceback as `exception`;
- `LOG_FORMAT=console`: structlog's ConsoleRenderer, for people (colours only on a terminal).

`LOG_LEVEL` (default INFO) is the threshold of that handler. Everything goes to standard error.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from temporalio.runtime import LoggingConfig

    from settings import Settings

# Fields first in every JSON line, in this order (those present); the rest follows. (structlog.contextvars
# yields the context in no particular order.)
FIRST = ("timestamp", "level", "logger", "event", "request_id", "user_id", "regime_id", "partnership_id",
         "workflow_id")
# uvicorn's loggers: they get no handler of their own and pass their records to the root's. The access line
# (`uvicorn.access`) carries the request's context (api/requestlog.py).
UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.asgi", "uvicorn.access")
# Extras that are another rendering of what the line already says (uvicorn's message with ANSI colours).
DROPPED_EXTRAS = ("color_message",)


def _timestamp(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """When the record was made (not when it is formatted: Temporal's core hands its logs over in batches)."""
    record = event.get("_record")
    created = record.created if record is not None else datetime.now(UTC).timestamp()
    event["timestamp"] = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
    return event


def _temporal(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """The Temporal SDK's workflow and activity loggers put their details in `extra` (`temporal_workflow`,
    `temporal_activity`): `workflow_id` becomes a field of its own, the one the API's lines carry too. A log
    forwarded from the SDK's core (`temporal_log`) keeps its fields, not the object."""
    for key in ("temporal_workflow", "temporal_activity"):
        details = event.get(key)
        if isinstance(details, Mapping) and details.get("workflow_id"):
            event["workflow_id"] = details["workflow_id"]
    core = event.pop("temporal_log", None)
    if core is not None:
        event["temporal_core"] = {"target": getattr(core, "target", None), **(getattr(core, "fields", None) or {})}
    for key in DROPPED_EXTRAS:
        event.pop(key, None)
    return event


def _access(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """uvicorn's access line as fields: its message is `client - "METHOD path HTTP/x" status`. The path loses
    its query string (it can hold what people searched for)."""
    args = event.pop("positional_args", None)
    if event.get("logger") == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
        client, method, full_path, _version, status = args
        path = str(full_path).split("?", 1)[0]
        event.update(event=f"{method} {path} {status}", method=method, path=path, status=status, client=client)
    return event


def _first_fields(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    return {**{k: event.pop(k) for k in FIRST if k in event}, **event}


class _Handler(logging.StreamHandler):
    """The one handler configure() installs (and replaces when called again)."""


def configure(settings: Settings | None = None, *, fmt: str | None = None, level: str | None = None) -> None:
    """Configure logging for this process (LOG_FORMAT and LOG_LEVEL from settings unless given). Safe to call
    again: the handler installed before is replaced, other handlers (pytest's) are left alone."""
    if fmt is None or level is None:
        if settings is None:
            from settings import get_settings

            settings = get_settings()
        fmt = fmt or settings.log_format
        level = level or settings.log_level
    stream = sys.stderr
    shared: list[Any] = [structlog.contextvars.merge_contextvars]
    renderer: list[Any]
    if fmt == "console":
        tty = stream.isatty()
        renderer = [structlog.dev.ConsoleRenderer(
            colors=tty, exception_formatter=structlog.dev.default_exception_formatter if tty
            else structlog.dev.plain_traceback)]
    elif fmt == "json":
        renderer = [structlog.processors.format_exc_info, _first_fields, structlog.processors.JSONRenderer()]
    else:
        raise ValueError(f"LOG_FORMAT must be json or console, not {fmt!r}")

    formatter = structlog.stdlib.ProcessorFormatter(
        # Records from stdlib loggers: the context of the call (the handler formats in the caller's thread and
        # context) and the record's `extra`.
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        pass_foreign_args=True,  # for _access
        processors=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name, _timestamp, _temporal,
                    _access,
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = _Handler(stream)
    handler.setFormatter(formatter)
    handler.setLevel(level)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in UVICORN:
        # uvicorn's CLI applies its own logging configuration before it loads the app: handlers of its own on
        # these loggers, which do not propagate. Theirs go and ours take their records; a level set with
        # --log-level stays. A logger uvicorn left without handlers and not propagating was switched off
        # (--no-access-log) and stays off.
        lg = logging.getLogger(name)
        if lg.handlers or lg.propagate:
            lg.handlers.clear()
            lg.propagate = True
    logging.getLogger("uvicorn").setLevel(logging.NOTSET)  # LOG_LEVEL decides, not uvicorn's default INFO
    logging.captureWarnings(True)  # warnings.warn(...) as log lines too

    structlog.configure(
        processors=[*shared, structlog.stdlib.filter_by_level, structlog.stdlib.PositionalArgumentsFormatter(),
                    structlog.processors.StackInfoRenderer(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    _quiet_temporal_messages()
    sys.excepthook = _uncaught


def _quiet_temporal_messages() -> None:
    """The SDK's workflow and activity loggers also append their details to the message as a dict's repr;
    they are fields of the line here (`temporal_workflow`, `temporal_activity`), so once is enough."""
    import temporalio.activity
    import temporalio.workflow

    temporalio.activity.logger.activity_info_on_message = False
    temporalio.workflow.logger.workflow_info_on_message = False


def temporal_core_logging() -> LoggingConfig:
    """For a temporalio Runtime: the SDK's core (Rust) logs forwarded to the logger `temporalio.core`, so they
    are rendered like every other line instead of printed to stderr in the core's own format (its target and
    fields in `temporal_core`)."""
    from temporalio.runtime import LogForwardingConfig, LoggingConfig, TelemetryFilter

    return LoggingConfig(filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                         forwarding=LogForwardingConfig(
                             logger=logging.getLogger("temporalio.core"), append_target_to_name=False,
                             prepend_target_on_message=False, append_log_fields_to_message=False))


def _uncaught(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """An exception nothing caught ends the process with one last line in the same format."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("uncaught").critical("uncaught exception: %s", value, exc_info=(kind, value, tb))
