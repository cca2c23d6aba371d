"""The inventory server, behind a realistic middleware stack.

    cd examples/middleware && python server.py --port 50051

Every call passes, outermost first:

1. ``LoggingMiddleware``      one JSON access-log line per call (stderr)
2. ``DeadlineMiddleware``     1 s for calls without a deadline, 10 s at most
3. ``AuthMiddleware``         bearer tokens; only "admin" may PutItem
                              (not for the health service: ``select(..., exclude=SYSTEM_SERVICES)``)
4. ``RateLimitMiddleware``    per principal: bursts of 10, then 1 call/s
5. ``ConcurrencyLimitMiddleware``  50 calls at once, newcomers wait up to 0.5 s
6. ``ErrorMappingMiddleware`` KeyError -> NOT_FOUND, nothing internal leaked
7. ``ValidationMiddleware``   request checks -> INVALID_ARGUMENT + BadRequest details
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any, Iterator

from grpcasgi import Middleware, Status
from grpcasgi.contrib.health import Health
from grpcasgi.middleware import (
    DEFAULT_MAPPING,
    SYSTEM_SERVICES,
    AuthMiddleware,
    BearerTokenScheme,
    ConcurrencyLimitMiddleware,
    DeadlineMiddleware,
    ErrorMappingMiddleware,
    LoggingMiddleware,
    RateLimitMiddleware,
    ValidationMiddleware,
    by_principal,
    select,
)
from grpcasgi.server import Server, Stream
from grpcasgi.types import Scope
from grpcasgi.utils import graceful_exit

from inventory.inventory_grpc import InventoryBase
from inventory.inventory_pb2 import GetItemRequest, Item, ListItemsRequest, PutItemRequest

# Demo credentials. A real service loads secrets from its secret store, or
# verifies JWTs with BearerTokenScheme(authenticate=...).
TOKENS = {"reader-token": "reader", "admin-token": "admin", "batch-token": "batch"}


class Inventory(InventoryBase):
    def __init__(self) -> None:
        self.items: dict[str, Item] = {
            "apple": Item(sku="apple", name="Apple", quantity=12),
            "pear": Item(sku="pear", name="Pear", quantity=3),
            "plum": Item(sku="plum", name="Plum", quantity=40),
        }

    async def GetItem(self, stream: Stream[GetItemRequest, Item]) -> None:
        request = await stream.recv_message()
        assert request is not None
        if request.sku == "slow":
            await asyncio.sleep(5)  # longer than the server's default deadline
        # An unknown SKU raises KeyError: ErrorMappingMiddleware sends NOT_FOUND.
        await stream.send_message(self.items[request.sku])

    async def PutItem(self, stream: Stream[PutItemRequest, Item]) -> None:
        request = await stream.recv_message()  # already validated
        assert request is not None
        logging.getLogger("inventory").info("%s stored %s", stream.state["principal"], request.item.sku)
        self.items[request.item.sku] = request.item
        await stream.send_message(request.item)

    async def ListItems(self, stream: Stream[ListItemsRequest, Item]) -> None:
        request = await stream.recv_message()
        assert request is not None
        items = sorted(self.items.values(), key=lambda item: item.sku)
        for item in items[: request.limit or None]:
            await stream.send_message(item)


def validate_get(request: GetItemRequest) -> Iterator[tuple[str, str]]:
    if not request.sku:
        yield ("sku", "must not be empty")


def validate_put(request: PutItemRequest) -> Iterator[tuple[str, str]]:
    item = request.item
    if not item.sku:
        yield ("item.sku", "must not be empty")
    elif not item.sku.isidentifier():
        yield ("item.sku", "letters, digits and underscores only")
    if not item.name:
        yield ("item.name", "must not be empty")
    if item.quantity < 0:
        yield ("item.quantity", "must not be negative")


def can_call(scope: Scope, principal: str) -> bool:
    """Everyone authenticated may read; only admin may write."""
    return scope["method"] != "PutItem" or principal == "admin"


class JSONFormatter(logging.Formatter):
    FIELDS = ("method", "status", "status_message", "duration_ms", "peer", "principal", "user_agent")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        for name in self.FIELDS:
            if getattr(record, name, None) is not None:
                entry[name] = getattr(record, name)
        return json.dumps(entry)


def build_server() -> Server:
    middleware = [
        Middleware(LoggingMiddleware, logger="inventory.access"),
        Middleware(DeadlineMiddleware, default=1.0, maximum=10.0),
        select(
            Middleware(AuthMiddleware, schemes=[BearerTokenScheme(tokens=TOKENS)], authorize=can_call),
            exclude=SYSTEM_SERVICES,
        ),
        select(Middleware(RateLimitMiddleware, rate=1.0, burst=10, key=by_principal()), exclude=SYSTEM_SERVICES),
        Middleware(ConcurrencyLimitMiddleware, max_in_flight=50, wait_timeout=0.5),
        Middleware(ErrorMappingMiddleware, mapping={**DEFAULT_MAPPING, KeyError: Status.NOT_FOUND}),
        Middleware(ValidationMiddleware, validators={GetItemRequest: validate_get, PutItemRequest: validate_put}),
    ]
    return Server([Inventory(), Health()], middleware=middleware)


async def main(*, host: str = "127.0.0.1", port: int = 50051) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    server = build_server()
    with graceful_exit([server]):
        await server.start(host, port)
        print(f"Serving on {host}:{port}", flush=True)
        await server.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50051)
    args = parser.parse_args()
    asyncio.run(main(host=args.host, port=args.port))
