"""Rich error details, end to end in one process: run ``python examples/rich_errors/main.py``.

The server validates requests and reports *why* a call failed with the
standard ``google.rpc`` details (see docs/errors.md); the client acts on them:
it shows field errors, and waits as long as ``RetryInfo`` says before
retrying. Needs ``googleapis-common-protos`` (``pip install 'grpcasgi[rich]'``).
Prints what happened and exits 0.
"""

from __future__ import annotations

import asyncio

from google.protobuf.wrappers_pb2 import StringValue

from grpcasgi import Cardinality, GRPCError, Handler
from grpcasgi.client import Channel, UnaryUnaryMethod
from grpcasgi.rich_errors import (
    BadRequest,
    ErrorInfo,
    ResourceInfo,
    bad_request,
    detail_of,
    error_info,
    quota_failure,
    resource_info,
    retry_delay,
    retry_info,
)
from grpcasgi.server import Server, Stream


class Library:
    def __init__(self) -> None:
        self.books = {"shelves/1/books/1": "Dune"}
        self.budget = 1  # calls allowed before the quota runs out

    async def AddBook(self, stream: Stream[StringValue, StringValue]) -> None:
        request = await stream.recv_message()
        assert request is not None
        title = request.value
        problems = {}
        if not title.strip():
            problems["title"] = "must not be empty"
        elif len(title) > 40:
            problems["title"] = f"at most 40 characters, got {len(title)}"
        if problems:
            raise bad_request(problems)
        if self.budget <= 0:
            self.budget = 1  # refilled after the delay we ask for
            raise quota_failure(
                {"project:demo": "1 book per window"},
                details=[retry_info(0.2), error_info("RATE_LIMITED", "library.example.com", {"limit": "1"})],
            )
        self.budget -= 1
        name = f"shelves/1/books/{len(self.books) + 1}"
        self.books[name] = title
        await stream.send_message(StringValue(value=name))

    async def GetBook(self, stream: Stream[StringValue, StringValue]) -> None:
        request = await stream.recv_message()
        assert request is not None
        if request.value not in self.books:
            raise resource_info("book", request.value, description="no such book")
        await stream.send_message(StringValue(value=self.books[request.value]))

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/example.Library/AddBook": Handler(self.AddBook, Cardinality.UNARY_UNARY, StringValue, StringValue),
            "/example.Library/GetBook": Handler(self.GetBook, Cardinality.UNARY_UNARY, StringValue, StringValue),
        }


async def add_book(add: UnaryUnaryMethod[StringValue, StringValue], title: str, attempts: int = 3) -> str | None:
    """Add a book; print field errors; wait and retry when the server says when."""
    for _ in range(attempts):
        try:
            return (await add(StringValue(value=title), timeout=5)).value
        except GRPCError as err:
            request = detail_of(err, BadRequest)
            if request is not None:
                for violation in request.field_violations:
                    print(f"  rejected: {violation.field} {violation.description}")
                return None
            delay = retry_delay(err)
            if delay is None:
                raise
            reason = detail_of(err, ErrorInfo)
            print(f"  {err.status.name} ({reason.reason if reason else '?'}); retrying in {delay}s")
            await asyncio.sleep(delay)
    return None


async def main() -> None:
    server = Server([Library()])
    await server.start("127.0.0.1", 0)
    try:
        async with Channel("127.0.0.1", server.port) as channel:
            add = UnaryUnaryMethod(channel, "/example.Library/AddBook", StringValue, StringValue)
            get = UnaryUnaryMethod(channel, "/example.Library/GetBook", StringValue, StringValue)
            for title in ("", "x" * 50, "Neuromancer", "Hyperion"):
                print(f"add {title[:12]!r}:")
                print(f"  -> {await add_book(add, title)}")
            try:
                await get(StringValue(value="shelves/9/books/9"), timeout=5)
            except GRPCError as err:
                missing = detail_of(err, ResourceInfo)
                assert missing is not None
                print(f"get: {err.status.name}: {missing.resource_type} {missing.resource_name} ({missing.description})")
    finally:
        server.close()
        await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
