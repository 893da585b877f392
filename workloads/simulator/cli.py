"""``python -m workloads.simulator.cli``: send the simulated fleet's readings to Event Hubs, or write them locally.

Either message shape (``--message-shape reading|device``): one message per reading, or one per device and timestamp
carrying all its sensors; the stream job's query and the local aggregator accept both, mixed. Every message is sent
with its device id as the Event Hubs partition key, because the query aggregates per partition (per-device
substreams need a fully parallel job, see ``aggregates.asa_query``): a device's readings must share one partition.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer

from workloads.common.aggregates import MessageShape
from workloads.common.windows import parse_hour
from workloads.simulator.fleet import FleetSpec, message_json, simulate, to_messages

app = typer.Typer(add_completion=False, help=__doc__)


class Sender(Protocol):
    def send(self, partition_key: str, bodies: list[str]) -> None: ...


def fleet_messages(spec: FleetSpec, start: datetime, end: datetime, shape: MessageShape) -> Iterator[tuple[str, str]]:
    """(partition key, JSON body) per message in (start, end], hour by hour so memory stays one hour's."""
    hour = start
    while hour < end:
        readings, _ = simulate(spec, hour, hour + timedelta(hours=1))
        for message in to_messages(readings, shape).to_dict("records"):
            yield str(message["device_id"]), message_json({str(k): v for k, v in message.items()})
        hour += timedelta(hours=1)


def send_grouped(messages: Iterator[tuple[str, str]], sender: Sender, group: int = 500) -> int:
    """Send in groups of one partition key each (an Event Hubs batch has one key); returns the messages sent."""
    pending: dict[str, list[str]] = {}
    sent = 0
    for key, body in messages:
        bodies = pending.setdefault(key, [])
        bodies.append(body)
        if len(bodies) >= group:
            sender.send(key, pending.pop(key))
            sent += len(bodies)
    for key, bodies in pending.items():
        sender.send(key, bodies)
        sent += len(bodies)
    return sent


class EventHubSender:
    """azure-eventhub's producer, imported only when sending (it is not a dependency of the workloads)."""

    def __init__(self, namespace: str, hub: str) -> None:
        try:
            eventhub: Any = importlib.import_module("azure.eventhub")
        except ImportError:
            raise typer.BadParameter("sending needs azure-eventhub: .venv/bin/pip install azure-eventhub") from None
        identity: Any = importlib.import_module("azure.identity")
        self._event_data = eventhub.EventData
        self._producer = eventhub.EventHubProducerClient(
            f"{namespace}.servicebus.windows.net", hub, identity.DefaultAzureCredential()
        )

    def send(self, partition_key: str, bodies: list[str]) -> None:
        batch = self._producer.create_batch(partition_key=partition_key)
        for body in bodies:
            try:
                batch.add(self._event_data(body))
            except ValueError:  # the batch is full: send it and start the next one
                self._producer.send_batch(batch)
                batch = self._producer.create_batch(partition_key=partition_key)
                batch.add(self._event_data(body))
        self._producer.send_batch(batch)

    def close(self) -> None:
        self._producer.close()


class FileSender:
    """JSON lines, one message a line, for inspection or for replaying into a hub with another tool."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("w", encoding="utf-8")

    def send(self, partition_key: str, bodies: list[str]) -> None:
        del partition_key  # the device id is in each body
        self._file.writelines(f"{body}\n" for body in bodies)

    def close(self) -> None:
        self._file.close()


@app.command()
def main(
    start: Annotated[str, typer.Option("--from", help="First hour, UTC (readings after it), e.g. 2026-11-25T10.")],
    end: Annotated[str, typer.Option("--to", help="Last hour, UTC (readings up to it).")],
    message_shape: Annotated[
        MessageShape,
        typer.Option(help="One message per reading, or one per device and timestamp with all its sensors."),
    ] = MessageShape.READING,
    devices: Annotated[int, typer.Option(min=1, max=100_000, help="Simulated devices.")] = 25,
    sensors: Annotated[int, typer.Option(min=1, max=32, help="Sensors per device.")] = 4,
    interval_seconds: Annotated[int, typer.Option(min=1, max=300, help="Seconds between readings of a sensor.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the simulation.")] = 7,
    out: Annotated[Path | None, typer.Option(help="Write JSON lines here instead of sending.")] = None,
    namespace: Annotated[
        str | None, typer.Option(help="Event Hubs namespace (`pulumi stack output event_hub_namespace`).")
    ] = None,
    hub: Annotated[str, typer.Option(help="Event hub name.")] = "readings",
) -> None:
    """Simulate (from, to] and send or write every message; prints how many."""
    if (out is None) == (namespace is None):
        raise typer.BadParameter("give exactly one of --out or --namespace")
    try:
        spec = FleetSpec(devices=devices, sensors=sensors, interval=timedelta(seconds=interval_seconds), seed=seed)
        first, last = parse_hour(start), parse_hour(end)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if last <= first:
        raise typer.BadParameter("--to must be after --from")
    sender: EventHubSender | FileSender = FileSender(out) if out is not None else EventHubSender(str(namespace), hub)
    try:
        sent = send_grouped(fleet_messages(spec, first, last, message_shape), sender)
    finally:
        sender.close()
    typer.echo(f"{sent:,} {message_shape} messages {'written to ' + str(out) if out else 'sent to ' + hub}")


if __name__ == "__main__":
    app()
