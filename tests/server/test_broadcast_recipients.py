"""Every event record names exactly the connections the event reached, in order.

The contract suite joins events to connections through the record's ``connections`` list, and
``send_all`` reuses one list of ids while the hub's connections stay the same (the fan-out
benchmark's hot path), so these check it across joins, leaves, a connection still in its
handshake, one that stopped reading, and more recipients than ``json_safe`` keeps of a list.
"""

from __future__ import annotations

from conduit_core.signalr import HandshakeResponse
from conduit_core.signalr.negotiate import new_connection_id
from simulator.hubs.connection import ServerHubConnection, TransportKind
from simulator.hubs.lifetime import HubLifetime
from simulator.hubs.options import HubOptions
from simulator.jsonsafe import MAX_ITEMS
from simulator.profiles import load_profile
from simulator.recorder import Recorder, RecordKind

OPTIONS = HubOptions()


def connect(hub: HubLifetime, *, handshake: bool = True) -> ServerHubConnection:
    conn = ServerHubConnection(connection_id=new_connection_id(), token=new_connection_id(),
                               key="vk_x", negotiate_version=1, options=OPTIONS)
    hub.add(conn)
    conn.attach(TransportKind.LONG_POLLING)
    if handshake:
        conn.protocol.receive_data(b'{"protocol":"json","version":1}\x1e')
        conn.protocol.send(HandshakeResponse())
    return conn


def named(recorder: Recorder) -> list[str]:
    """The ``connections`` of the newest event record, as readers of the timeline see it."""
    return recorder.records(RecordKind.EVENT)[-1].get("connections")


def test_each_broadcast_names_the_connections_it_reached_as_they_come_and_go() -> None:
    recorder = Recorder()
    hub = HubLifetime(load_profile("documented").hubs[0], OPTIONS, recorder)
    conns = [connect(hub) for _ in range(5)]
    ids = [conn.connection_id for conn in conns]
    for _ in range(2):  # the second reuses the first's list of ids
        assert hub.send_all("TaskProgress", ["task_x", 1]) == 5
        assert named(recorder) == ids
    late = connect(hub)
    assert hub.send_all("TaskProgress", ["task_x", 2]) == 6
    assert named(recorder) == [*ids, late.connection_id]
    hub.remove(conns[1], "client closed")
    assert hub.send_all("TaskProgress", ["task_x", 3]) == 5
    assert named(recorder) == [ids[0], *ids[2:], late.connection_id]
    connect(hub, handshake=False)  # not open yet: nothing is sent to it
    assert hub.send_all("TaskProgress", ["task_x", 4]) == 5
    assert named(recorder) == [ids[0], *ids[2:], late.connection_id]
    conns[3].stuck("the client stopped reading")  # closing: nothing more is sent to it
    assert hub.send_all("TaskProgress", ["task_x", 5]) == 4
    assert named(recorder) == [ids[0], ids[2], ids[4], late.connection_id]
    room = OPTIONS.max_outbox_bytes - conns[4].outbox_bytes
    assert conns[4].enqueue(b"x" * (room - 10))  # the next event overflows its outbox
    assert hub.send_all("TaskProgress", ["task_x", 6]) == 3
    assert named(recorder) == [ids[0], ids[2], late.connection_id]
    hub.add_to_group(conns[0], "g")
    assert hub.send_group("g", "TaskProgress", ["task_x", 7]) == 1
    assert named(recorder) == [ids[0]]
    events = recorder.records(RecordKind.EVENT)
    assert [e.get("recipients") for e in events] == [5, 5, 6, 5, 5, 4, 3, 1]


def test_a_broadcast_to_more_connections_than_json_safe_keeps_of_a_list_names_them_all() -> None:
    recorder = Recorder()
    hub = HubLifetime(load_profile("documented").hubs[0], OPTIONS, recorder)
    ids = [connect(hub).connection_id for _ in range(MAX_ITEMS + 200)]
    assert hub.send_all("TaskProgress", ["task_x", 1]) == len(ids)
    assert named(recorder) == ids
