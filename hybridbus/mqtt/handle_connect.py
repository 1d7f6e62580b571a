"""CONNECT, DISCONNECT and the session they open or close (MQTT 3.1 / 3.1.1 / 5.0 §3.1, §3.14)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hybridbus.codec.mqtt import Connect, Disconnect, encode_connack
from hybridbus.core import client as reasons
from hybridbus.mqtt.message import MqttMessage
from hybridbus.mqtt.systopics import is_sys_topic
from hybridbus.security.core import JWT_BAD_CREDENTIALS
from hybridbus.subjects import is_valid_topic_name, topic_to_subject

if TYPE_CHECKING:
    from hybridbus.mqtt.connection import MqttConnection

log = logging.getLogger("hybridbus.mqtt")

# CONNACK codes (5.0 reason codes; encode_connack maps them to 3.1.1 return codes)
UNSPECIFIED_ERROR = 0x80
CLIENT_ID_NOT_VALID = 0x85  # 3.1.1: 0x02 identifier rejected
BAD_USER_OR_PASSWORD = 0x86  # 3.1.1: 0x04
NOT_AUTHORIZED = 0x87  # 3.1.1: 0x05
SERVER_UNAVAILABLE = 0x88  # 3.1.1: 0x03
TOPIC_NAME_INVALID = 0x90
BAD_AUTHENTICATION_METHOD = 0x8C
QUOTA_EXCEEDED = 0x97
PROTOCOL_ERROR = 0x82
MALFORMED_PACKET = 0x81

# [MQTT-3.1.3-5] 3.1 (level 3) client identifiers are 1 to 23 characters.
MQTT31_MAX_CLIENT_ID = 23


def handle_connect(conn: MqttConnection, p: Connect) -> None:
    """CONNECT in three steps: identify the client, authenticate it, open its session.
    Each step refuses (CONNACK with a reason, then close) and returns False to stop."""
    if conn.session is not None:
        # A second CONNECT is a protocol violation: close [MQTT-3.1.0-2].
        conn.protocol_error("second CONNECT [MQTT-3.1.0-2]", PROTOCOL_ERROR)
        return
    conn.level = p.protocol_level
    assigned = _identify(conn, p)
    if assigned is None or not _authenticate(conn, p):
        return
    # The MQTT state of the client's account (client ids, retained messages, wills and
    # stores are per account): $G's is the server's, another's made on first use.
    broker = conn.account.mqtt or conn.server.mqtt_broker(conn.account)
    if broker is None:
        conn.refuse(SERVER_UNAVAILABLE, f"MQTT state of account {conn.account.name} unavailable")
        return
    if broker.persistence is not None:
        broker.persistence.reveal()  # its $MQTT_ streams show from the first CONNECT on
    if broker.is_flapping(conn.client_id) and not conn.flap_delayed:
        # Two devices sharing one id would take the session from each other in a
        # tight loop; slow the newcomer down instead of letting them storm.
        conn.delay_connect(p)
        return
    _open_session(conn, p, assigned, broker)


def _identify(conn: MqttConnection, p: Connect) -> bool | None:
    """Check the connection limit, the client id and the will topic; set
    conn.client_id. Returns whether the id was assigned, or None when refused."""
    level = p.protocol_level
    if conn.over_limit:
        # max_connections: 3.1.1 "Server unavailable" (0x03), 5.0 "Quota exceeded" (0x97).
        log.warning("%s - maximum connections exceeded", conn.describe())
        code = QUOTA_EXCEEDED if level == 5 else SERVER_UNAVAILABLE
        conn.refuse(code, "maximum connections exceeded", "Maximum Connections Exceeded")
        return None
    client_id = p.client_id
    assigned = False
    if not client_id:
        if level == 5 or p.clean_start:
            # [MQTT-3.1.3-6] the server assigns a unique id to a clean session.
            client_id = conn.server.mqtt.assign_client_id()
            assigned = True
        else:
            # [MQTT-3.1.3-8] an empty id without CleanSession is rejected with 0x02.
            conn.refuse(CLIENT_ID_NOT_VALID, "empty client id without clean session")
            return None
    elif level == 3 and len(client_id) > MQTT31_MAX_CLIENT_ID:
        conn.refuse(CLIENT_ID_NOT_VALID, "3.1 client id longer than 23 characters")
        return None
    conn.client_id = client_id

    if p.will_topic is not None and not is_valid_topic_name(p.will_topic):
        conn.protocol_error(
            "will topic is not a valid topic name [MQTT-3.1.3-11]", TOPIC_NAME_INVALID
        )
        return None
    return assigned


def _authenticate(conn: MqttConnection, p: Connect) -> bool:
    """Credentials and the will's publish permission; False when refused."""
    if p.protocol_level == 5 and "authentication_method" in p.properties:
        # No enhanced authentication method is configured (4.12): refuse, never hang.
        conn.refuse(BAD_AUTHENTICATION_METHOD, "unsupported authentication method")
        return False
    server = conn.server
    user = server.authenticate_mqtt(conn, p.username, p.password)
    if user is None:
        server.stats.auth_failures += 1
        conn.refuse(_refusal_code(conn, p), "authentication failed")
        return False
    conn.user = user or None
    if not server.join_account(conn):
        # The account's max_connections (core/account.py join_account): the count moves
        # from $G to the account only here, as a NATS CONNECT's does. nats-server 2.15.1
        # (auth.go RegisterUser -> reportErrRegisterAccount -> maxAccountConnExceeded)
        # closes an MQTT client without any CONNACK; we say why, as for the server's
        # own max_connections: 3.1.1 0x03 Server unavailable, 5.0 0x97 Quota exceeded.
        code = QUOTA_EXCEEDED if p.protocol_level == 5 else SERVER_UNAVAILABLE
        conn.refuse(code, "maximum account active connections exceeded", reasons.MAX_CONNECTIONS)
        return False
    if p.will_topic is not None and is_sys_topic(p.will_topic):
        # A will is a publish: not into the broker's own $SYS tree (handle_publish).
        conn.refuse(NOT_AUTHORIZED, "will topic in $SYS")
        return False
    if p.will_topic is not None and conn.perms is not None:
        # nats-server refuses a CONNECT whose will it could not publish.
        if not server.may_publish(conn, topic_to_subject(p.will_topic), None):
            conn.refuse(NOT_AUTHORIZED, "will topic not authorized")
            return False
    return True


def _refusal_code(conn: MqttConnection, p: Connect) -> int:
    """The CONNACK code of a refused login. Config users: a user name that did not
    log in is 0x86 Bad User Name or Password (3.1.1 0x04), none at all 0x87 Not
    authorized (0x05). Operator mode (a bearer user JWT as the password): 3.1.1 0x05
    Not authorized, as nats-server's MQTT answers every failed login (auth.go
    authViolation); 5.0 (MQTT 5 §3.2.2.2.2): 0x86 when the password is no usable JWT
    ("the data in the user name or password is malformed or not acceptable": not a
    JWT, a bad signature, an issuer nobody trusts), 0x87 when a valid JWT may not log
    in ("the Client is not authorized to connect": not a bearer token, expired,
    revoked, its src, times or connection types)."""
    security = conn.server.security
    if security.trust is None:
        return BAD_USER_OR_PASSWORD if p.username is not None else NOT_AUTHORIZED
    if p.protocol_level == 5 and security.jwt_refusal == JWT_BAD_CREDENTIALS:
        return BAD_USER_OR_PASSWORD
    return NOT_AUTHORIZED


def _open_session(conn: MqttConnection, p: Connect, assigned: bool, broker: Any) -> None:
    """Keep-alive, will and client limits; open or resume the session; CONNACK."""
    level = p.protocol_level
    props = p.properties
    if level == 5:
        expiry = props.get("session_expiry_interval", 0)
        persistent = expiry > 0
    else:
        expiry = None
        persistent = not p.clean_start
    keep_alive = p.keep_alive
    max_keepalive = broker.options.max_keepalive
    server_keep_alive = None
    if max_keepalive and (keep_alive == 0 or keep_alive > max_keepalive):
        keep_alive = max_keepalive
        server_keep_alive = keep_alive
    conn.keep_alive = keep_alive

    if p.will_topic is not None:
        will_props = p.will_properties
        conn.will = MqttMessage(
            p.will_topic,
            p.will_payload,
            p.will_qos,
            p.will_retain,
            will_publish_properties(will_props),
        )
        conn.will_delay = int(will_props.get("will_delay_interval", 0)) if will_props else 0

    ack_props = None
    if level == 5:
        conn.apply_client_limits(props)
        ack_props = conn.connack_properties(assigned, server_keep_alive)
        if not _connack_fits(conn, ack_props):
            return

    persistence = broker.persistence
    if persistence is not None and persistence.remote:
        # The session's state lives in a JetStream domain (mqtt/jspersist.py): claim and
        # fetch it first; CONNACK (or 0x88 Server unavailable) once it is in.
        will = (conn.will, conn.will_delay) if conn.will is not None else None
        task = persistence.attach(conn.client_id, p.clean_start, persistent, expiry, will)
        conn.wait_for_state(
            task, lambda t: _attached(conn, p, broker, persistent, expiry, ack_props, t)
        )
        return
    _connected(conn, p, broker, persistent, expiry, ack_props, None)


def _attached(conn, p: Connect, broker, persistent, expiry, ack_props, task) -> None:
    """The JetStream domain answered (or did not): CONNACK or refuse."""
    err = task.exception() if not task.cancelled() else TimeoutError("cancelled")
    if err is not None:
        # While the domain is unreachable a CONNECT that needs state is refused
        # ([MQTT-3.2.2-6]: 3.1.1 0x03 Server unavailable; 5.0 0x88, 0x89 Server busy
        # when other nodes kept winning the claim), never left hanging.
        code = getattr(err, "connack_code", SERVER_UNAVAILABLE)
        conn.refuse(code, f"MQTT session state unavailable: {err}")
        return
    _connected(conn, p, broker, persistent, expiry, ack_props, task.result())


def _connected(conn, p: Connect, broker, persistent, expiry, ack_props, attached) -> None:
    level = p.protocol_level
    session, present = broker.open_session(
        conn, conn.client_id, p.clean_start, persistent, attached
    )
    if level == 5:
        session.expiry_interval = expiry
    elif persistent:
        session.expiry_interval = None
    conn.session = session
    session.perms = conn.perms
    session.window = min(broker.options.max_ack_pending or 65535, conn.client_receive_max)
    if broker.nodewatch is not None:
        # kept where other nodes find them should this node die (mqtt/nodewatch.py)
        if conn.will is not None:
            broker.nodewatch.arm(conn.client_id, conn.will, conn.will_delay)
        broker.nodewatch.track(session, offline=False)

    # [MQTT-3.2.2-1..3] Session Present says whether a stored session was resumed.
    conn.queue(encode_connack(present, 0, ack_props, level))
    conn.on_connected()
    session.resume()


# CONNACK properties a client can go without, dropped in this order when the CONNACK
# would exceed its Maximum Packet Size: absent, the first four mean what we say
# (3.2.2.3.5, .12, .13, .14), no Topic Alias Maximum means no aliases from the client
# (stricter, harmless), and Response Information is a MAY (4.10.2).
OPTIONAL_CONNACK_PROPERTIES = (
    "retain_available",
    "wildcard_subscription_available",
    "subscription_identifier_available",
    "shared_subscription_available",
    "response_information",
    "topic_alias_maximum",
)
PACKET_TOO_LARGE = 0x95
SMALLEST_CONNACK = 5  # fixed header, flags, reason code, empty properties


def _connack_fits(conn: MqttConnection, ack_props: dict) -> bool:
    """Never send a packet larger than the client's Maximum Packet Size
    [MQTT-3.1.2-24]: trim the CONNACK's optional properties; when it still does not
    fit, refuse with the 5-byte CONNACK 0x95 (Packet too large) if that fits, or
    just close. False when refused."""
    limit = conn.client_max_packet
    if not limit or len(encode_connack(False, 0, ack_props, 5)) <= limit:
        return True
    for name in OPTIONAL_CONNACK_PROPERTIES:
        if ack_props.pop(name, None) is not None:
            if len(encode_connack(False, 0, ack_props, 5)) <= limit:
                return True
    why = f"the CONNACK exceeds the client's Maximum Packet Size {limit} [MQTT-3.1.2-24]"
    if limit >= SMALLEST_CONNACK:
        conn.refuse(PACKET_TOO_LARGE, why)
    else:
        log.info("%s - connection refused: %s", conn.describe(), why)
        conn.close(reasons.PROTOCOL_VIOLATION)
    return False


def will_publish_properties(will_props: dict | None) -> dict | None:
    """The PUBLISH properties of a will (5.0 section 3.1.3.2): Payload Format
    Indicator, Message Expiry Interval, Content Type, Response Topic, Correlation
    Data and User Properties, kept in order [MQTT-3.1.3-10]. The Will Delay Interval
    is CONNECT-only: a PUBLISH may not carry it."""
    if not will_props:
        return None
    props = {k: v for k, v in will_props.items() if k != "will_delay_interval"}
    return props or None


def handle_disconnect(conn: MqttConnection, p: Disconnect) -> None:
    session = conn.session
    if conn.level == 5:
        props = p.properties
        if "session_expiry_interval" in props and session is not None:
            new_expiry = props["session_expiry_interval"]
            if session.expiry_interval == 0 and new_expiry:
                # [MQTT-3.14.2-2] a session that was to end at disconnect cannot be revived here.
                conn.protocol_error(
                    "session expiry set on DISCONNECT after 0 [MQTT-3.14.2-2]", PROTOCOL_ERROR
                )
                return
            session.expiry_interval = new_expiry
            session.persistent = new_expiry > 0
            session.broker.save(session)
        if p.reason_code == 0x04:
            # "Disconnect with Will Message": the client asks for its will.
            conn.close_normally(publish_will=True)
            return
    # A clean DISCONNECT discards the will [MQTT-3.14.4-3].
    conn.close_normally(publish_will=False)
