"""What the ``godel`` command modules share: output helpers, argument types, the subcommand factory."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from godel_client.client import GodelClient
from godel_client.errors import FailedPreconditionError

Handler = Callable[[GodelClient, argparse.Namespace], int]
LocalHandler = Callable[[argparse.Namespace], int]  # a command that needs no connection

MAX_PAGE_SIZE = 1000
RUNTIMES = ("command", "openai", "openclaw")
_Item = TypeVar("_Item")
_Resource = TypeVar("_Resource", bound=Message)


def connection_options(args: argparse.Namespace) -> dict[str, Any]:
    """The connection options every command takes (cli.py's --addr, --api-key, --profile,
    --tls-*) as the keyword arguments of GodelClient and of godel_client.credentials.resolve."""
    return {
        "address": args.addr,
        "api_key": args.api_key,
        "profile": args.profile,
        "tls_ca": args.tls_ca,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
    }


# -- output ---------------------------------------------------------------------------------------


def out(text: str = "") -> None:
    print(text, flush=True)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def to_json(message: Message, *, indent: int | None = 2) -> str:
    return json_format.MessageToJson(message, indent=indent, ensure_ascii=False)


def dump(document: dict[str, Any]) -> None:
    out(json.dumps(document, indent=2, ensure_ascii=False))


def dump_line(document: dict[str, Any]) -> None:
    """One NDJSON line."""
    out(json.dumps(document, ensure_ascii=False))


def show(args: argparse.Namespace, message: _Resource, text: Callable[[_Resource], str]) -> int:
    """Prints one resource: as JSON with --json, else as ``text`` renders it."""
    out(to_json(message) if args.json else text(message))
    return 0


def list_or_note(
    args: argparse.Namespace,
    key: str,
    items: Iterable[Message],
    document: Message,
    table: Callable[[Any], str],
    *,
    limit: int | None = None,
) -> int:
    """Prints (the first ``limit`` of) ``items`` as a table, or (--json) as ``document`` (a
    List...Response) holding them in its field ``key``."""
    found = take(items, limit)
    if args.json:
        getattr(document, key).extend(found)
        data = json_format.MessageToDict(document)
        data.setdefault(document.DESCRIPTOR.fields_by_name[key].json_name, [])
        dump(data)
    elif found:
        out(table(found))
    else:
        note(f"no {key.replace('_', ' ')} found")
    return 0


def control(
    args: argparse.Namespace,
    kind: str,
    done: str,
    call: Callable[[], _Resource],
    state: Callable[[_Resource], str],
) -> int:
    """Runs a control verb (``args.action``) on ``args.id`` and prints ``paused team ID: now …``.

    A refusal by the resource's state is reported as ``cannot pause team ID: <why>``.
    """
    try:
        resource = call()
    except FailedPreconditionError as exc:
        if exc.message.startswith("cannot "):
            raise  # the server already said what could not be done, and why
        message = f"cannot {args.action} {kind} {args.id}: {exc.message}"
        raise FailedPreconditionError(exc.code, message, exc.details, status=exc.status) from None
    out(to_json(resource) if args.json else f"{done} {kind} {args.id}: now {state(resource)}")
    return 0


def report_deleted(args: argparse.Namespace, kind: str) -> int:
    if args.json:
        dump({"id": args.id, "deleted": True})
    else:
        out(f"deleted {kind} {args.id}")
    return 0


def page_size(limit: int | None, default: int = 50) -> int:
    """The page size that fetches ``limit`` items in as few calls as possible."""
    return min(limit, MAX_PAGE_SIZE) if limit else default


def take(items: Iterable[_Item], limit: int | None) -> list[_Item]:
    """The first ``limit`` items (all of them when ``limit`` is None)."""
    iterator: Iterator[_Item] = iter(items)
    return list(islice(iterator, limit) if limit else iterator)


def wait(seconds: float) -> None:
    """Sleeps between two polls (a seam for tests)."""
    time.sleep(seconds)


# -- argument types -------------------------------------------------------------------------------


def _number(text: str, convert: Callable[[str], float], what: str, *, zero_ok: bool) -> float:
    """``text`` as a number greater than 0 (or, with ``zero_ok``, not negative)."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    if zero_ok and not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    if not zero_ok and not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text!r}")
    return value


def positive_int(text: str) -> int:
    return int(_number(text, int, "a whole number", zero_ok=False))


def non_negative_int(text: str) -> int:
    return int(_number(text, int, "a whole number", zero_ok=True))


def positive_float(text: str) -> float:
    return _number(text, float, "a number", zero_ok=False)


def non_negative_float(text: str) -> float:
    return _number(text, float, "a number", zero_ok=True)


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def repo_path(text: str) -> str:
    """A local path is made absolute: the server requires one (and would not know our directory)."""
    if "://" in text:
        return text  # a URL: the server says what it accepts
    return str(Path(text).expanduser().resolve())


def file_text(text: str) -> str:
    """The content of the file named ``text`` (``-`` reads standard input)."""
    if text == "-":
        return sys.stdin.read()
    try:
        return Path(text).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise argparse.ArgumentTypeError(f"cannot read {text}: {reason}") from None


# -- parser ---------------------------------------------------------------------------------------


def command_parser(
    group: Any, name: str, handler: Handler, common: argparse.ArgumentParser, **kwargs: Any
) -> argparse.ArgumentParser:
    """A subcommand that runs ``handler`` and takes the connection options (``common``)."""
    parser: argparse.ArgumentParser = group.add_parser(name, parents=[common], **kwargs)
    parser.set_defaults(handler=handler)
    return parser


def local_parser(
    group: Any, name: str, handler: LocalHandler, common: argparse.ArgumentParser, **kwargs: Any
) -> argparse.ArgumentParser:
    """A subcommand that runs ``handler`` without connecting to a mesh (``godel config ...``)."""
    parser: argparse.ArgumentParser = group.add_parser(name, parents=[common], **kwargs)
    parser.set_defaults(local=handler)
    return parser


def list_options(parser: argparse.ArgumentParser, kind: str, statuses: Sequence[str]) -> None:
    """``--status`` (repeatable, one of ``statuses``) and ``--limit`` of a ``list`` command."""
    parser.add_argument(
        "--status",
        action="append",
        choices=statuses,
        metavar="STATUS",
        help=f"only this status (repeatable): {', '.join(statuses)}",
    )
    parser.add_argument("--limit", metavar="N", type=positive_int, help=f"show at most N {kind}")


def takes_argv(parser: argparse.ArgumentParser) -> None:
    """Marks a command as accepting a command-runtime argv after ``--`` (found in ``args.command``)."""
    parser.set_defaults(takes_argv=True, command=[])
