"""The Security facade without sockets: who logs in as whom, with which permissions."""

from __future__ import annotations

import logging

import pytest

from hybridbus.options import AuthOptions, Options, Permissions, TLSOptions, User
from hybridbus.security import Security
from hybridbus.security import auth as A


class FakeTransport:
    def __init__(self, cert: dict | None = None) -> None:
        self.cert = cert

    def get_extra_info(self, name, default=None):
        if name == "ssl_object" and self.cert is not None:
            cert = self.cert

            class SSLObj:
                def getpeercert(self):
                    return cert

            return SSLObj()
        return default


class Client:
    def __init__(self, ws: bool = False, cert: dict | None = None) -> None:
        self.ip, self.port, self.cid = "127.0.0.9", 5555, 7
        self.perms = "unset"
        self.ws = ws
        self.transport = FakeTransport(cert)


def opts(**auth) -> Options:
    o = Options()
    o.auth = AuthOptions(**auth)
    return o


READER = Permissions(publish_allow=[], subscribe_allow=["news.>"])


def test_no_auth_configured_everyone_anonymous():
    sec = Security(Options())
    assert not sec.auth_required
    c = Client()
    assert sec.authenticate_nats(c, {"user": "x", "pass": "y"}) == ""
    assert c.perms is None
    assert sec.authenticate_mqtt(c, None, None) == ""


def test_default_permissions_reach_anonymous_clients():
    sec = Security(opts(default_permissions=READER))
    assert sec.auth_required  # so the NATS front end asks us, and perms get attached
    c = Client()
    assert sec.authenticate_nats(c, {}) == ""
    assert c.perms is not None and not c.perms.may_publish("x")


def test_plain_users(caplog):
    sec = Security(
        opts(users=[User("alice", "pw1", READER), User("bob", "pw2")], default_permissions=None)
    )
    assert sec.auth_required
    c = Client()
    assert sec.authenticate_nats(c, {"user": "alice", "pass": "pw1"}) == "alice"
    assert c.perms.subscribe("news.x", None) == 1
    assert sec.authenticate_nats(c, {"user": "bob", "pass": "pw2"}) == "bob"
    assert c.perms is None
    with caplog.at_level(logging.WARNING, "hybridbus.security"):
        assert sec.authenticate_nats(c, {"user": "alice", "pass": "nope"}) is None
        assert sec.authenticate_nats(c, {"user": "carol", "pass": "pw1"}) is None
        assert sec.authenticate_nats(c, {}) is None
    assert sec.failures == {"bad password": 1, "unknown user": 1, "no credentials": 1}
    # the client's address is in every refusal line
    assert sum("127.0.0.9:5555" in r.getMessage() for r in caplog.records) == 3
    assert not any("nope" in r.getMessage() for r in caplog.records)


def test_users_get_default_permissions_unless_their_own():
    sec = Security(
        opts(
            users=[User("own", "x", Permissions(publish_allow=["mine"])), User("dflt", "y")],
            default_permissions=Permissions(publish_allow=["shared"]),
        )
    )
    c = Client()
    sec.authenticate_nats(c, {"user": "own", "pass": "x"})
    assert c.perms.may_publish("mine") and not c.perms.may_publish("shared")
    sec.authenticate_nats(c, {"user": "dflt", "pass": "y"})
    assert c.perms.may_publish("shared") and not c.perms.may_publish("mine")


@pytest.mark.parametrize("prefix", ["2a", "2b", "2y"])
def test_bcrypt_passwords(hashes, prefix):
    sec = Security(opts(users=[User("alice", hashes[prefix])]))
    c = Client()
    assert sec.authenticate_nats(c, {"user": "alice", "pass": "s3cret"}) == "alice"
    assert sec.authenticate_nats(c, {"user": "alice", "pass": "s3creT"}) is None
    # the hash itself is not a password
    assert sec.authenticate_nats(c, {"user": "alice", "pass": hashes[prefix]}) is None
    assert sec.authenticate_mqtt(c, "alice", b"s3cret") == "alice"


def test_bcrypt_verdicts_remembered(hashes, monkeypatch):
    calls = []
    real = A._bcrypt.checkpw

    def counting(pw, h):
        calls.append(pw)
        return real(pw, h)

    monkeypatch.setattr(A._bcrypt, "checkpw", counting)
    A._verdicts.clear()
    h = hashes["2b"]
    assert A.check_password(h, "s3cret") and A.check_password(h, "s3cret")
    # a client looping with a stale password costs one bcrypt, not one per attempt
    assert not A.check_password(h, "bad") and not A.check_password(h, "bad")
    assert calls == [b"s3cret", b"bad"]
    assert not any(b"s3cret" in k or b"bad" in k for k in A._verdicts)


def test_bcrypt_budget_refuses_instead_of_stalling(hashes, monkeypatch):
    """Guessers cannot make the event loop spend more than the budget on bcrypt."""
    sec = Security(opts(users=[User("alice", hashes["2b"])]))
    c = Client()
    A._verdicts.clear()
    assert sec.authenticate_nats(c, {"user": "alice", "pass": "s3cret"}) == "alice"
    monkeypatch.setattr(A, "_budget", [A.time.monotonic(), A.BCRYPT_BUDGET])  # spent
    assert sec.authenticate_nats(c, {"user": "alice", "pass": "guess-1"}) is None
    assert sec.failures["bcrypt budget exhausted"] == 1
    # a remembered verdict still answers while the budget is spent
    assert sec.authenticate_nats(c, {"user": "alice", "pass": "s3cret"}) == "alice"
    # the next second brings a new budget
    monkeypatch.setattr(A, "_budget", [A.time.monotonic() - 1.5, A.BCRYPT_BUDGET])
    assert sec.authenticate_nats(c, {"user": "alice", "pass": "guess-2"}) is None
    assert sec.failures["bad password"] == 1


def test_bcrypt_long_password_truncated_like_go(hashes):
    import bcrypt

    long_pw = b"x" * 80
    h = bcrypt.hashpw(long_pw[:72], bcrypt.gensalt(4)).decode()
    assert A.check_password(h, long_pw)
    assert A.check_password(h, long_pw[:72] + b"different tail")
    assert not A.check_password("$2b$04$garbage", "x")


def test_single_user_and_token():
    sec = Security(opts(user="u", password="p"))
    c = Client()
    assert sec.authenticate_nats(c, {"user": "u", "pass": "p"}) == "u"
    assert sec.authenticate_nats(c, {"user": "u", "pass": "q"}) is None
    tok = Security(opts(token="t0ken"))
    assert tok.authenticate_nats(c, {"auth_token": "t0ken"}) == ""
    assert tok.authenticate_nats(c, {"auth_token": "t0ke"}) is None
    assert tok.authenticate_nats(c, {"user": "a", "pass": "t0ken"}) is None
    # MQTT: the token is the password, whatever the user name
    assert tok.authenticate_mqtt(c, "anyone", b"t0ken") == ""
    assert tok.authenticate_mqtt(c, None, b"t0ken") == ""
    assert tok.authenticate_mqtt(c, "anyone", b"wrong") is None
    assert tok.authenticate_mqtt(c, None, None) is None


def test_no_auth_user_and_connection_types():
    o = opts(
        users=[
            User("svc", "pw", allowed_connection_types=["STANDARD"]),
            User("dev", "pw", READER, allowed_connection_types=["MQTT", "MQTT_WS"]),
        ]
    )
    o.no_auth_user = "dev"
    sec = Security(o)
    c = Client()
    assert sec.authenticate_nats(c, {"user": "svc", "pass": "pw"}) == "svc"
    assert sec.authenticate_mqtt(c, "svc", b"pw") is None
    assert sec.authenticate_mqtt(c, "dev", b"pw") == "dev"
    assert sec.authenticate_mqtt(Client(ws=True), "dev", b"pw") == "dev"
    assert sec.authenticate_nats(c, {"user": "dev", "pass": "pw"}) is None
    # no credentials at all: the no_auth_user, with its permissions and types
    m = Client()
    assert sec.authenticate_mqtt(m, None, None) == "dev"
    assert m.perms is not None
    assert sec.authenticate_nats(Client(), {}) is None  # dev may not use STANDARD
    assert sec.failures["connection type not allowed"] == 3
    # WEBSOCKET is its own type for NATS
    assert sec.authenticate_nats(Client(ws=True), {"user": "svc", "pass": "pw"}) is None


def test_mqtt_and_websocket_auth_override():
    o = opts(user="natsuser", password="np")
    o.mqtt.auth = AuthOptions(user="mq", password="mp")
    o.websocket.auth = AuthOptions(token="wstok")
    sec = Security(o)
    c = Client()
    assert sec.authenticate_mqtt(c, "mq", b"mp") == "mq"
    assert sec.authenticate_mqtt(c, "natsuser", b"np") is None
    assert sec.authenticate_nats(c, {"user": "natsuser", "pass": "np"}) == "natsuser"
    assert sec.authenticate_nats(Client(ws=True), {"auth_token": "wstok"}) == ""
    assert sec.authenticate_nats(Client(ws=True), {"user": "natsuser", "pass": "np"}) is None
    # MQTT over websocket uses the MQTT credentials
    assert sec.authenticate_mqtt(Client(ws=True), "mq", b"mp") == "mq"


def test_websocket_only_auth_still_makes_nats_ask():
    o = Options()
    o.websocket.auth = AuthOptions(user="w", password="p")
    assert not Security(o).auth_required  # the websocket listener is off
    o.websocket.enabled = True
    sec = Security(o)
    assert sec.auth_required
    assert sec.authenticate_nats(Client(), {}) == ""  # plain TCP: nothing configured
    assert sec.authenticate_nats(Client(ws=True), {}) is None


def test_unsupported_credentials_refused():
    sec = Security(opts(users=[User("a", "b")]))
    assert sec.authenticate_nats(Client(), {"nkey": "UABC", "sig": "x"}) is None
    assert sec.authenticate_nats(Client(), {"user": 5, "pass": "b"}) is None
    assert sec.failures["unsupported credentials"] == 2


def test_user_without_password_cannot_log_in_by_name():
    sec = Security(opts(users=[User("certonly", None)]))
    assert sec.authenticate_nats(Client(), {"user": "certonly"}) is None
    assert sec.authenticate_nats(Client(), {"user": "certonly", "pass": ""}) is None


CERT = {
    "subject": (
        (("countryName", "US"),),
        (("organizationName", "Acme, Inc"),),
        (("commonName", "bob"),),
    ),
    "subjectAltName": (("DNS", "bob.example.com"), ("email", "bob@example.com")),
}


def test_cert_identities_order_and_dn():
    class Obj:
        def getpeercert(self):
            return CERT

    names = A.cert_identities(Obj())
    assert names == [
        "bob@example.com",
        "bob.example.com",
        "CN=bob,O=Acme\\, Inc,C=US",
        "bob",
    ]
    assert A.cert_identities(None) == []


@pytest.mark.parametrize(
    "user", ["bob@example.com", "bob.example.com", "CN=bob,O=Acme\\, Inc,C=US", "bob"]
)
def test_verify_and_map(user):
    o = opts(users=[User(user, None, READER)])
    o.tls = TLSOptions(cert_file="x", key_file="y", verify_and_map=True)
    sec = Security(o)
    c = Client(cert=CERT)
    # the certificate decides; a password is neither needed nor enough
    assert sec.authenticate_nats(c, {}) == user
    assert c.perms is not None
    assert sec.authenticate_nats(Client(cert={"subject": ((("commonName", "eve"),),)}), {}) is None
    assert sec.authenticate_nats(Client(cert=None), {"user": user, "pass": "x"}) is None
    assert sec.failures["certificate not mapped to a user"] == 2
