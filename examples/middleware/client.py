"""Call the inventory server and show what each middleware does to the calls.

    cd examples/middleware && python client.py --port 50051

Exits 1 if a call does not end the way the server's middleware promise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Awaitable

from grpcasgi import GRPCError, Status
from grpcasgi.client import Channel
from grpcasgi.contrib.protos.grpc.health.v1.health_grpc import HealthStub
from grpcasgi.contrib.protos.grpc.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from inventory.inventory_grpc import InventoryStub
from inventory.inventory_pb2 import GetItemRequest, Item, ListItemsRequest, PutItemRequest

READER = {"authorization": "Bearer reader-token"}
ADMIN = {"authorization": "Bearer admin-token"}
BATCH = {"authorization": "Bearer batch-token"}

failures: list[str] = []


async def expect(title: str, call: Awaitable[Any], status: Status = Status.OK) -> Any:
    """Run ``call``, print how it ended, record a failure if not with ``status``."""
    try:
        result = await call
    except GRPCError as err:
        print(f"{title:<44} -> {err.status.name}: {err.message}")
        for detail in err.details or ():
            for violation in getattr(detail, "field_violations", ()):
                print(f"{'':<47}{violation.field}: {violation.description}")
        if err.status is not status:
            failures.append(f"{title}: expected {status.name}, got {err.status.name}")
        return err
    print(f"{title:<44} -> OK")
    if status is not Status.OK:
        failures.append(f"{title}: expected {status.name}, got OK")
    return result


async def main(*, host: str, port: int) -> int:
    async with Channel(host, port) as channel:
        inventory = InventoryStub(channel)
        health = HealthStub(channel)

        reply = await expect("health check, no credentials", health.Check(HealthCheckRequest()))
        assert reply.status == HealthCheckResponse.SERVING

        await expect("GetItem without a token", inventory.GetItem(GetItemRequest(sku="apple")), Status.UNAUTHENTICATED)
        item = await expect("GetItem as reader", inventory.GetItem(GetItemRequest(sku="apple"), metadata=READER))
        print(f"{'':<47}{item.name}: {item.quantity}")
        await expect(
            "PutItem as reader",
            inventory.PutItem(PutItemRequest(item=Item(sku="kiwi", name="Kiwi")), metadata=READER),
            Status.PERMISSION_DENIED,
        )
        await expect(
            "PutItem as admin, invalid item",
            inventory.PutItem(PutItemRequest(item=Item(sku="", quantity=-1)), metadata=ADMIN),
            Status.INVALID_ARGUMENT,
        )
        await expect(
            "PutItem as admin",
            inventory.PutItem(PutItemRequest(item=Item(sku="kiwi", name="Kiwi", quantity=7)), metadata=ADMIN),
        )
        await expect(
            "GetItem of an unknown SKU", inventory.GetItem(GetItemRequest(sku="mango"), metadata=READER), Status.NOT_FOUND
        )
        items = await expect("ListItems(limit=3) as reader", inventory.ListItems(ListItemsRequest(limit=3), metadata=READER))
        print(f"{'':<47}{', '.join(i.sku for i in items)}")
        await expect(
            "GetItem that outlives the server's deadline",
            inventory.GetItem(GetItemRequest(sku="slow"), metadata=READER),
            Status.DEADLINE_EXCEEDED,
        )

        # Rate limit: the batch principal may burst 10 calls, then 1 per second.
        outcomes: list[str] = []
        retry_after = None
        for _ in range(15):
            try:
                await inventory.GetItem(GetItemRequest(sku="pear"), metadata=BATCH)
                outcomes.append("OK")
            except GRPCError as err:
                outcomes.append(err.status.name)
                for detail in err.details or ():
                    if detail.DESCRIPTOR.full_name == "google.rpc.RetryInfo":
                        retry_after = detail.retry_delay.ToTimedelta().total_seconds()
        print(f"{'15 GetItem calls as batch':<44} -> {outcomes.count('OK')} OK, "
              f"{outcomes.count('RESOURCE_EXHAUSTED')} RESOURCE_EXHAUSTED (retry after {retry_after}s)")
        if "RESOURCE_EXHAUSTED" not in outcomes or outcomes[:10] != ["OK"] * 10:
            failures.append(f"rate limit: unexpected outcomes {outcomes}")

    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50051)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(host=args.host, port=args.port)))
