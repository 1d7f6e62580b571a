"""conf/accounts.conf: the multi-tenant example loads as documented and a server
started from it enforces what its comments say (examples/multi_tenant.py and
tests/examples/test_examples.py run the whole demo against `hybridbus serve`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from nats.errors import NoRespondersError

from hybridbus.config.load import check_config, load_options, startup_errors
from hybridbus.server.server import Server
from tests.helpers import mqtt_packets as mp
from tests.helpers.wire import Wire

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "accounts.conf"


def test_accounts_example_loads_without_errors_or_warnings():
    opts, warnings = load_options(str(EXAMPLE))
    assert warnings == []
    assert startup_errors(opts) == []
    assert opts.system_account == "SYS"
    accounts = {a.name: a for a in opts.accounts}
    assert [u.user for u in accounts["A"].users] == ["a-device", "a-service"]
    assert [u.user for u in accounts["B"].users] == ["b-device", "b-service"]
    assert [u.user for u in accounts["SYS"].users] == ["admin"]
    (export,) = accounts["A"].exports
    assert (export.subject, export.service, export.accounts) == ("plant.latest", True, ["B"])
    (imp,) = accounts["B"].imports
    assert (imp.account, imp.subject, imp.to) == ("A", "plant.latest", "partner.a.latest")
    assert accounts["A"].max_connections == 50 and accounts["B"].max_payload == 65536
    assert accounts["A"].jetstream and not accounts["B"].jetstream
    assert (accounts["A"].js_max_streams, accounts["A"].js_max_file) == (10, 1 << 30)
    rc, lines = check_config(str(EXAMPLE))
    assert rc == 0 and lines[0].endswith(f"is valid ({opts.config_digest})")


@pytest.fixture
async def server(tmp_path):
    opts, _ = load_options(str(EXAMPLE))
    # Loopback, OS-chosen ports and a store of the test's own instead of the file's.
    opts.port = opts.http_port = opts.mqtt.port = 0
    opts.jetstream.store_dir = str(tmp_path / "store")
    server = Server(opts)
    await server.start()
    yield server
    await server.shutdown()


async def connect(server: Server, user: str | None, password: str | None) -> nats.NATS:
    async def quiet(e):
        pass

    return await nats.connect(
        f"nats://127.0.0.1:{server.nats_port}",
        user=user,
        password=password,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=2,
        error_cb=quiet,
    )


async def test_accounts_example_serves_its_users_and_export(server):
    a = await connect(server, "a-service", "a-service-pw")
    b = await connect(server, "b-service", "b-service-pw")

    async def answer(msg):
        await msg.respond(b"from A")

    await a.subscribe("plant.latest", cb=answer)
    await a.flush()
    reply = await b.request("partner.a.latest", b"", timeout=2)
    assert reply.data == b"from A"
    # B's own plant.latest is B's: nobody there answers.
    with pytest.raises(NoRespondersError):
        await b.request("plant.latest", b"", timeout=1)
    # Devices log in over MQTT only; nobody gets in without a user.
    for user, password in (("a-device", "a-device-pw"), (None, None)):
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await asyncio.wait_for(connect(server, user, password), 3)
    wire = await Wire.open(server.mqtt_port)
    await wire.send(mp.connect("sensor-1", username="a-device", password=b"a-device-pw"))
    await wire.expect(mp.connack(0, 0))
    await wire.close()
    await a.close()
    await b.close()
