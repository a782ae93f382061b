"""``lumi events``: watch, publish, and inspect or replay dead letters on an app's broker.

    lumi events tail Orders.placed [--from-start] [--count N]
    lumi events publish Orders.placed --json '{"order_id": "o-1"}' [--key K]
    lumi events dlq ls [TOPIC] [--group G] [--json]
    lumi events dlq replay [TOPIC] [--group G] [--id EVENT_ID]... [--all]

The broker is the one the app's config gives the topic's service; ``dlq`` commands that name
no topic ask every broker the app's services use. A payload published to a topic of one of the
app's services is validated against the event's schema first.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lumi.cli.output import fail, print_json, stdout
from lumi.model.suggest import close_matches

if TYPE_CHECKING:
    from lumi.brokers.base import Broker, Delivery
    from lumi.config import AppConfig
    from lumi.model.envelope import Envelope

AppDir = Annotated[Path, typer.Option("--app", "-a", help="The app folder (holding lumi.toml).")]
Env = Annotated[str | None, typer.Option("--env", "-e", help="A named environment of the config.")]
Group = Annotated[str | None, typer.Option("--group", "-g", help="Only this consumer group.")]


def _urls(config: AppConfig, topic: str | None) -> list[str]:
    """The brokers to ask: the topic's service's, or (no topic) every broker of the app."""
    from lumi.brokers import scheme_of

    known = {cls.name for cls in config.load_services()}
    service = topic.split(".", 1)[0] if topic else None
    if service in known:
        urls = [config.binding(service).events or "embedded"]
    elif topic:
        urls = [config.defaults.events or "embedded"]
    else:
        candidates = [config.defaults.events, *(config.binding(s).events for s in sorted(known))]
        urls = list(dict.fromkeys(u or "embedded" for u in candidates))
    reachable = [u for u in urls if scheme_of(u) != "memory"]
    if not reachable:
        fail(
            "this app's events use the memory broker, which lives inside one process, so "
            'lumi events cannot reach it; use events = "embedded" (or a network broker)'
        )
    return reachable


def _broker(config: AppConfig, topic: str | None) -> Broker:
    from lumi.brokers import create_broker

    return create_broker(_urls(config, topic)[0], app_dir=config.root)


@contextlib.asynccontextmanager
async def _connected(config: AppConfig, topic: str | None) -> AsyncIterator[Broker]:
    async with _broker(config, topic) as broker:
        yield broker


def _check_topic(topic: str) -> None:
    if topic.count(".") < 1 or not all(topic.split(".")):
        fail(f"{topic!r} is not a topic; topics are SERVICE.EVENT, e.g. Orders.placed")


def app_topics(config: AppConfig) -> list[str]:
    """Every topic the app's services publish or subscribe to, with their dead-letter topics."""
    from lumi.brokers.base import dead_letter_topic
    from lumi.model.reflect import reflect

    topics: set[str] = set()
    for cls in config.load_services():
        iface = reflect(cls).interface
        topics.update(iface.topic(name) for name in iface.events)
        for sub in iface.subscriptions:
            topics.update((sub.topic, dead_letter_topic(sub.topic, iface.name)))
    return sorted(topics)


def _check_known_topic(config: AppConfig, topic: str) -> None:
    """Exit with a did-you-mean unless one of the app's services uses ``topic`` (tailing a
    misspelt topic would wait forever)."""
    topics = app_topics(config)
    if topic in topics:
        return
    service = topic.partition(".")[0]
    own = [t for t in topics if t.startswith(f"{service}.") and t.count(".") == 1]
    if own and topic.count(".") == 1:
        match = close_matches(topic, own, n=1)
        hint = f"; did you mean {match[0]!r}?" if match else ""
        fail(f"{service} has no topic {topic!r}{hint} (its topics: {', '.join(own)})")
    match = close_matches(topic, topics, n=1)
    hint = f"; did you mean {match[0]!r}?" if match else ""
    fail(
        f"no service of this app publishes or subscribes to {topic!r}{hint} "
        f"(topics: {', '.join(topics) or 'none'}; --any-topic tails it anyway)"
    )


def _envelope(
    config: AppConfig, broker: Broker, topic: str, payload: Any, key: str | None
) -> Envelope:
    """The event to publish: validated by the app's event schema when the topic is the app's."""
    from lumi.model.context import new_id
    from lumi.model.envelope import Envelope, now_rfc3339
    from lumi.model.reflect import reflect
    from lumi.pipeline.publish import EventSink

    service, _, event = topic.partition(".")
    classes = {cls.name: cls for cls in config.load_services()}
    if service in classes and "." not in event:
        reflected = reflect(classes[service])
        if event not in reflected.events:
            names = sorted(reflected.events)
            match = close_matches(event, names, n=1)
            hint = f"; did you mean {match[0]!r}?" if match else ""
            fail(
                f"{service} exports no event {event!r}{hint} (events: {', '.join(names) or 'none'})"
            )
        sink = EventSink(broker, service, app=config.name)
        return sink.envelope(reflected.events[event], payload, key)
    return Envelope(
        id=new_id(),
        source=f"/lumi/{config.name}/cli",
        type=topic,
        data=json.dumps(payload, ensure_ascii=False).encode(),
        time=now_rfc3339(),
        subject=key,
        partitionkey=key,
    )


def register(app: typer.Typer) -> None:
    events = typer.Typer(help="Watch and publish events; list and replay dead letters.")
    dlq = typer.Typer(help="Dead letters: events a consumer group gave up on.")
    events.add_typer(dlq, name="dlq")
    app.add_typer(events, name="events")

    @events.command("tail")
    def tail_cmd(
        topic: Annotated[str, typer.Argument(help="The topic, SERVICE.EVENT.")],
        app_dir: AppDir = Path("."),
        env: Env = None,
        from_start: Annotated[
            bool, typer.Option("--from-start", help="Begin with the oldest retained event.")
        ] = False,
        count: Annotated[
            int | None, typer.Option("--count", "-n", min=1, help="Stop after N events.")
        ] = None,
        any_topic: Annotated[
            bool,
            typer.Option("--any-topic", help="Allow a topic none of the app's services uses."),
        ] = False,
    ) -> None:
        """Print each event published on TOPIC as one line of CloudEvents JSON."""
        _check_topic(topic)
        from lumi.config import load_config

        config = load_config(app_dir, env)
        if not any_topic:
            _check_known_topic(config, topic)
        _run(_tail(config, topic, "earliest" if from_start else "latest", count))

    @events.command("publish")
    def publish_cmd(
        topic: Annotated[str, typer.Argument(help="The topic, SERVICE.EVENT.")],
        payload: Annotated[str, typer.Option("--json", help="The event's data, as JSON.")],
        key: Annotated[
            str | None, typer.Option("--key", "-k", help="Partition key (default: the event's).")
        ] = None,
        app_dir: AppDir = Path("."),
        env: Env = None,
    ) -> None:
        """Publish one event; prints its id once it is stored."""
        _check_topic(topic)
        try:
            data = json.loads(payload)
        except ValueError as exc:
            fail(f"--json is not valid JSON: {exc}")
        from lumi.config import load_config

        config = load_config(app_dir, env)
        broker = _broker(config, topic)
        envelope = _envelope(config, broker, topic, data, key)
        _run(_publish(broker, topic, envelope))
        stdout.print(envelope.id, highlight=False)

    @dlq.command("ls")
    def dlq_ls_cmd(
        topic: Annotated[str | None, typer.Argument(help="Only this topic.")] = None,
        group: Group = None,
        app_dir: AppDir = Path("."),
        env: Env = None,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    ) -> None:
        """List dead letters, oldest first, with the reason each was given up on."""
        topic, group = _target(topic, group)
        from lumi.config import load_config

        config = load_config(app_dir, env)
        letters = _run(_dead_letters(config, topic, group))
        if not letters:
            if not as_json:
                stdout.print("no dead letters", highlight=False)
            return
        for letter in letters:
            if as_json:
                print_json(letter)
            else:
                stdout.print(
                    f"{letter['id']}  {letter['topic']}  group={letter['group']}  "
                    f"attempts={letter['attempts']}  {letter['time']}  {letter['reason']}",
                    highlight=False,
                    markup=False,
                )

    @dlq.command("replay")
    def dlq_replay_cmd(
        topic: Annotated[str | None, typer.Argument(help="Only this topic.")] = None,
        group: Group = None,
        ids: Annotated[
            list[str] | None, typer.Option("--id", help="Only this event id (repeatable).")
        ] = None,
        everything: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
        app_dir: AppDir = Path("."),
        env: Env = None,
    ) -> None:
        """Send dead letters back to the consumer group that failed them."""
        topic, group = _target(topic, group)
        if not (topic or group or ids or everything):
            fail("say which dead letters to replay: a TOPIC, --group, --id EVENT_ID, or --all")
        from lumi.config import load_config

        config = load_config(app_dir, env)
        count = _run(_replay(config, topic, group, ids))
        if not count:
            fail("no dead letters matched, so none were replayed (see: lumi events dlq ls)")
        stdout.print(f"replayed {count} dead letter(s)", highlight=False)


def _run(main: Any) -> Any:
    import asyncio

    return asyncio.run(main)


def _target(topic: str | None, group: str | None) -> tuple[str | None, str | None]:
    """A topic may be given as its dead-letter topic name, which also names the group."""
    from lumi.brokers.base import split_dead_letter_topic

    if topic is None:
        return None, group
    origin = split_dead_letter_topic(topic)
    if origin is not None:
        if group is not None and group != origin[1]:
            fail(f"{topic!r} is the dead-letter topic of group {origin[1]!r}, not {group!r}")
        return origin
    _check_topic(topic)
    return topic, group


async def _tail(config: AppConfig, topic: str, start: str, count: int | None) -> None:
    import asyncio

    done = asyncio.Event()
    seen = 0

    async def show(delivery: Delivery) -> None:
        nonlocal seen
        if count is not None and seen >= count:
            return
        seen += 1
        sys.stdout.write(delivery.envelope.to_json().decode() + "\n")
        sys.stdout.flush()
        if count is not None and seen >= count:
            done.set()

    async with _connected(config, topic) as broker:
        await broker.subscribe(topic, None, show, start=start)
        print("tailing " + topic, file=sys.stderr, flush=True)
        await done.wait()


async def _publish(broker: Broker, topic: str, envelope: Envelope) -> None:
    async with broker:
        await broker.publish(topic, [envelope])


async def _dead_letters(
    config: AppConfig, topic: str | None, group: str | None
) -> list[dict[str, Any]]:
    from lumi.brokers import create_broker

    letters = []
    for url in _urls(config, topic):
        async with create_broker(url, app_dir=config.root) as broker:
            letters.extend(await broker.dead_letters(topic, group))
    letters.sort(key=lambda letter: letter.time)
    return [
        {
            "id": letter.envelope.id,
            "topic": letter.topic,
            "group": letter.group,
            "attempts": letter.attempts,
            "time": letter.time,
            "reason": letter.reason,
            "event": json.loads(letter.envelope.to_json()),
        }
        for letter in letters
    ]


async def _replay(
    config: AppConfig, topic: str | None, group: str | None, ids: list[str] | None
) -> int:
    from lumi.brokers import create_broker

    count = 0
    for url in _urls(config, topic):
        async with create_broker(url, app_dir=config.root) as broker:
            count += await broker.replay(topic, group, event_ids=ids or None)
    return count
