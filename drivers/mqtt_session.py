"""One MQTT connection that leaves nothing behind, however it ends.

`aiomqtt.Client` (2.x, up to 2.5.1) keeps its paho socket and its housekeeping task
(`Client._misc_loop`, which pings the broker every second) when entering fails after the TCP
connection was made: a broker that accepts the connection but sends no CONNACK in time (busy,
shutting down, a TLS peer refusing our certificate) leaves an open socket and a task that lives
until the keepalive expires. A service that retries with backoff would pile them up during an
outage. After an unexpected disconnection the task is only cancelled by a callback scheduled
for later, so it can outlive the session too.

`mqtt_session(client)` is `async with client` that, on the way out, closes the socket if paho
still holds it and waits until the housekeeping task has ended. The daemon, the sentinel and the
inventory service connect through it (so do the tests' MQTT clients that live through broker
restarts). It reaches into aiomqtt's and paho's private state: recheck it on an aiomqtt upgrade
(tests/system/test_mqtt_session.py fails if the leak comes back or the attributes go away).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiomqtt


@asynccontextmanager
async def mqtt_session(client: aiomqtt.Client) -> AsyncIterator[aiomqtt.Client]:
    """Connect `client` for the `async with` block; on leaving, its socket and task are gone."""
    try:
        async with client:
            yield client
    finally:
        await _release(client)


async def _release(client: aiomqtt.Client) -> None:
    # aiomqtt creates the housekeeping task from a callback that paho's connect (run in an
    # executor thread) schedules on the loop: let any such callback run before looking for it.
    await asyncio.sleep(0)
    paho = client._client
    if paho.socket() is not None:
        # paho's own close: unregisters the socket from the loop (aiomqtt's socket callbacks)
        # and closes it.
        paho._sock_close()
    task: asyncio.Task[None] | None = client._misc_task
    if task is not None and not task.done():
        task.cancel()
        # `wait` rather than `await task`: a cancellation of *this* task must still propagate.
        await asyncio.wait([task])
