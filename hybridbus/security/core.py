"""The Security facade the server calls: authentication, authorization, TLS contexts.

Theory of operation
-------------------
``Security(options)`` compiles the auth configuration once: one table of users (with
their compiled permissions), and three ``Realm`` views of it for the NATS, MQTT and
websocket listeners (see ``auth.py``). The protocol front ends call:

* ``authenticate_nats(client, connect)`` / ``authenticate_mqtt(client, user, pw)``:
  the user name ("" for anonymous and token logins) or None to refuse. On success
  ``client.perms`` is set: None when the client is unrestricted, else an object with
  ``may_publish``/``subscribe``/``may_receive``/``note_reply`` (``permissions.py``).
* ``may_publish(client, subject, reply)`` / ``may_subscribe(client, subject, queue)``:
  only called when ``client.perms`` is not None, always with NATS subjects (MQTT
  topics are mapped first), so one rule set governs both protocols.
* ``server_context(tls)``: an ``ssl.SSLContext`` for a listener (``tls.py``).
* ``nonce_for(client)``: the nonce a NATS connection's INFO carries when its listener
  has nkey users (``nkey.py``); ``authenticate_nats`` checks the signature of it.

Which credentials apply (nats-server's order): a CONNECT naming an ``nkey`` of the
listener's users logs in by its signature and nothing else; a listener with
``verify_and_map`` names the user by the client certificate; otherwise a configured
token, then user/password; a client that presents no credentials at all becomes the
``no_auth_user`` when one is set (an nkey user too). Password and certificate logins
never reach an nkey user, so nkey users cannot log in over MQTT. With no credentials configured anywhere, everyone is
anonymous and gets ``default_permissions`` (if any). Users without permissions of
their own get ``default_permissions`` too.

Connection types (``allowed_connection_types``): NATS over TCP is ``STANDARD``, NATS
over websocket ``WEBSOCKET``, MQTT ``MQTT``, MQTT over websocket ``MQTT_WS``. The
websocket front end marks its connections with a class attribute ``ws = True``.

Every refusal is logged with the client's address and counted in ``failures``
(by reason); the front ends count the total in ``server.stats.auth_failures``.
"""

from __future__ import annotations

import logging
import ssl
from collections import Counter
from typing import Any

from hybridbus.options import AuthOptions, Options, TLSOptions
from hybridbus.security import nkey
from hybridbus.security import operator as op_mode
from hybridbus.security import permissions as P
from hybridbus.security.auth import (
    AuthBusy,
    AuthUser,
    Realm,
    bcrypt_pending,
    cert_identities,
    check_password,
    is_bcrypt,
)
from hybridbus.security.tls import server_context

log = logging.getLogger("hybridbus.security")

STANDARD = "STANDARD"
WEBSOCKET = "WEBSOCKET"
MQTT = "MQTT"
MQTT_WS = "MQTT_WS"

# Refusal reasons (keys of Security.failures)
BAD_PASSWORD = "bad password"
UNKNOWN_USER = "unknown user"
BAD_TOKEN = "bad token"
NO_CREDENTIALS = "no credentials"
CONNECTION_TYPE = "connection type not allowed"
CERT_NOT_MAPPED = "certificate not mapped to a user"
UNSUPPORTED = "unsupported credentials"
UNKNOWN_NKEY = "unknown nkey"
NO_NONCE = "nkey login without a nonce"
NO_SIGNATURE = "signature missing"
BAD_SIGNATURE_ENCODING = "signature not valid base64"
BAD_SIGNATURE = "signature not verified"
NKEY_NEEDS_SIGNATURE = "nkey users log in only by signing a nonce"
BUSY = "bcrypt budget exhausted"
NO_JWT = "Authentication requires a user JWT"  # operator mode (operator.py)

# The kinds of refused user JWT logins (Security.jwt_refusal)
JWT_BAD_CREDENTIALS = "bad credentials"
JWT_NOT_AUTHORIZED = "not authorized"

GLOBAL_ACCOUNT = "$G"  # authorization's users, token and anonymous logins


class Security:
    # Why the last user JWT login was refused: JWT_BAD_CREDENTIALS (no JWT, not a JWT,
    # a bad signature, an issuer nobody trusts) or JWT_NOT_AUTHORIZED (a valid JWT
    # this login may not use). MQTT answers each with its own CONNACK code
    # (mqtt/handle_connect.py); logins are synchronous, so the CONNECT that just
    # failed reads its own.
    jwt_refusal = JWT_NOT_AUTHORIZED

    def __init__(self, options: Options) -> None:
        self.options = options
        self.failures: Counter[str] = Counter()
        # nats-server accepts a wildcard subscription that only overlaps a deny rule
        # and drops the denied messages at delivery. Until every delivery path asks
        # ``client.perms.may_receive(subject)``, such subscriptions are refused instead
        # (the safe side); the server sets this to True once they do.
        self.filter_deliveries = False
        auth = options.auth or AuthOptions()
        self.default_perms = P.compile_permissions(auth.default_permissions)
        self.users: dict[str, AuthUser] = {}  # by name, an nkey user by public key
        # Account objects by name (hybridbus.core.account), given by the server: a
        # login sets client.account to its user's. Empty: every client stays in $G.
        self.accounts: dict[str, Any] = {}
        # Operator (JWT) mode (operator.py): every login is a user JWT. on_login(client,
        # login) is called after each one (hybridbus.core.operator sets it).
        self.trust = None
        if options.operator is not None and options.operator.jwts:
            self.trust = op_mode.Trust(options.operator)
        self.on_login: Any = None
        has_nkeys = self._load_users(options, auth)
        plain = [u.name for u in self.users.values() if u.password and not is_bcrypt(u.password)]
        if auth.password and not is_bcrypt(auth.password):
            plain.append(auth.user or "")
        if plain:
            log.warning("Plaintext passwords detected, use nkeys or bcrypt")

        def realm(override: AuthOptions | None, no_auth_user: str | None, tls) -> Realm:
            src = auth
            if override is not None and (override.user or override.token):
                src = override  # nats-server's per-listener "auth override"
            single = None
            if src.user:
                single = AuthUser(src.user, src.password, self.default_perms)
            return Realm(
                users=self.users if src is auth else {},
                single=single,
                token=src.token or None,
                no_auth_user=no_auth_user or options.no_auth_user,
                default_perms=self.default_perms,
                tls_map=bool(tls is not None and tls.verify_and_map),
                nonce=has_nkeys and src is auth,
            )

        self.nats = realm(None, None, options.tls)
        self.mqtt = realm(options.mqtt.auth, options.mqtt.no_auth_user, options.mqtt.tls)
        ws = options.websocket
        self.websocket = realm(ws.auth, ws.no_auth_user, None if ws.no_tls else ws.tls)
        # MQTT over websocket: MQTT credentials, the websocket listener's certificates.
        self.mqtt_ws = Realm(
            users=self.mqtt.users,
            single=self.mqtt.single,
            token=self.mqtt.token,
            no_auth_user=self.mqtt.no_auth_user,
            default_perms=self.default_perms,
            tls_map=self.websocket.tls_map,
        )
        # The NATS front end only calls authenticate_nats (for TCP and websocket
        # clients alike) when this is set; anonymous clients need that call too when
        # default permissions must reach them.
        self.auth_required = (
            self.trust is not None
            or self.nats.required
            or (ws.enabled and self.websocket.required)
            or self.default_perms is not None
        )

    def _load_users(self, options: Options, auth: AuthOptions) -> bool:
        """The user table: authorization's users and every account's, by name (an nkey
        user by public key). Returns whether any user logs in with an nkey."""
        every_user = list(auth.users)
        for acc in options.accounts:
            every_user.extend(acc.users)
        for u in every_user:
            if u.permissions:
                perms = P.compile_permissions(u.permissions)
            else:
                # authorization's default_permissions are its own users' (an account's
                # default_permissions were applied to its users by the loader)
                perms = self.default_perms if u.account is None else None
            types = frozenset(t.upper() for t in u.allowed_connection_types or ()) or None
            key = nkey.verify_key(u.nkey) if u.nkey else None
            self.users[u.name] = AuthUser(u.name, u.password, perms, types, key, u.account)
        return any(u.nkey for u in every_user)

    # -- authentication --------------------------------------------------------------

    def authenticate_nats(self, client: Any, connect: dict) -> str | None:
        """The user name ("" for anonymous) or None to refuse. Sets client.perms."""
        if getattr(client, "ws", False):
            realm, kind = self.websocket, WEBSOCKET
        else:
            realm, kind = self.nats, STANDARD
        user = connect.get("user")
        password = connect.get("pass")
        token = connect.get("auth_token")
        if not all(v is None or isinstance(v, str) for v in (user, password, token)):
            return self._refuse(client, kind, UNSUPPORTED, None)
        if self.trust is not None:
            # nats-server: with trusted operators only a user JWT logs in
            return self._login_jwt(client, kind, connect.get("jwt"), connect.get("sig"))
        public_key = connect.get("nkey")
        if public_key and realm.nonce:
            # nats-server: a CONNECT naming an nkey is an nkey login, whatever else it has
            return self._login_nkey(client, realm, kind, public_key, connect.get("sig"))
        if not (user or password or token) and any(connect.get(k) for k in ("nkey", "jwt", "sig")):
            return self._refuse(client, kind, UNSUPPORTED, None)
        return self._login(client, realm, kind, user or None, password, token)

    def _login_nkey(
        self, client: Any, realm: Realm, kind: str, public_key: Any, sig: Any
    ) -> str | None:
        """An nkey login (``nkey.py``): the key must name an nkey user and `sig` must be
        its signature of the nonce this connection's INFO carried."""
        entry = realm.users.get(public_key) if isinstance(public_key, str) else None
        if entry is None or entry.nkey is None:
            return self._refuse(client, kind, UNKNOWN_NKEY, str(public_key))
        if public_key != realm.no_auth_user:  # that key is anyone's without credentials
            nonce = getattr(client, "nonce", None)
            if not nonce:
                return self._refuse(client, kind, NO_NONCE, public_key)
            if not sig:
                return self._refuse(client, kind, NO_SIGNATURE, public_key)
            raw = nkey.decode_signature(sig)
            if raw is None:
                return self._refuse(client, kind, BAD_SIGNATURE_ENCODING, public_key)
            if not nkey.signature_ok(entry.nkey, nonce, raw):
                return self._refuse(client, kind, BAD_SIGNATURE, public_key)
        return self._accept(
            client, kind, entry.name, entry.perms, entry.allowed_types, entry.account
        )

    def nonce_for(self, client: Any) -> str | None:
        """A fresh nonce for a NATS connection's INFO when its listener has nkey users
        (nats-server sends one then), else None."""
        realm = self.websocket if getattr(client, "ws", False) else self.nats
        return nkey.new_nonce() if realm.nonce or self.trust is not None else None

    def _login_jwt(self, client: Any, kind: str, token: Any, sig: Any) -> str | None:
        """A user JWT login (operator.py): into the account that issued the user."""
        self.jwt_refusal = JWT_BAD_CREDENTIALS
        if not token:
            return self._refuse(client, kind, NO_JWT, None)
        try:
            login = self.trust.login(
                token, sig, getattr(client, "nonce", None), kind, getattr(client, "ip", "")
            )
        except op_mode.LoginRefused as err:
            if not err.credentials:
                self.jwt_refusal = JWT_NOT_AUTHORIZED
            # counted by the reason's fixed part; the log line has the details
            reason = str(err)
            self.failures[reason.split(":")[0]] += 1
            client.perms = None
            log.warning(
                "%s:%s - cid:%s - %s authentication failed for user JWT: %s",
                getattr(client, "ip", "?"),
                getattr(client, "port", "?"),
                getattr(client, "cid", "?"),
                kind,
                reason,
            )
            return None
        self.jwt_refusal = JWT_NOT_AUTHORIZED  # the JWT is good; what follows is policy
        if login.account not in self.accounts:
            return self._refuse(client, kind, "account not loaded", login.user)
        perms = P.compile_permissions(login.perms)
        name = self._accept(client, kind, login.user, perms, login.allowed_types, login.account)
        if name is not None and self.on_login is not None:
            self.on_login(client, login)
        return name

    def authenticate_mqtt(
        self, client: Any, username: str | None, password: bytes | None
    ) -> str | None:
        if getattr(client, "ws", False):
            realm, kind = self.mqtt_ws, MQTT_WS
        else:
            realm, kind = self.mqtt, MQTT
        if self.trust is not None:
            # nats-server: an MQTT client logs in with a bearer user JWT as its password
            # (any user name); there is no nonce to sign
            token = password.decode("ascii", "replace") if password else None
            return self._login_jwt(client, kind, token, None)
        # nats-server: with a token configured, the MQTT password carries it and the
        # user name is ignored.
        token = password if realm.token is not None else None
        return self._login(client, realm, kind, username or None, password, token)

    def _login(
        self,
        client: Any,
        realm: Realm,
        kind: str,
        user: str | None,
        password: str | bytes | None,
        token: str | bytes | None,
    ) -> str | None:
        if realm.tls_map:
            return self._login_cert(client, realm, kind)
        if realm.token is not None:
            try:
                ok = bool(token) and check_password(realm.token, token)
            except AuthBusy:
                return self._refuse(client, kind, BUSY, user)
            if ok:
                return self._accept(client, kind, "", realm.default_perms, None)
            if user is None and not password and not token and realm.no_auth_user:
                return self._no_auth(client, realm, kind)
            return self._refuse(client, kind, BAD_TOKEN if token else NO_CREDENTIALS, user)
        if not realm.required:
            # Nothing configured to check against: everyone is anonymous.
            return self._accept(client, kind, "", realm.default_perms, None)
        if user is None:
            if not password and not token and realm.no_auth_user:
                return self._no_auth(client, realm, kind)
            return self._refuse(client, kind, NO_CREDENTIALS, None)
        entry = realm.lookup(user)
        if entry is None:
            return self._refuse(client, kind, UNKNOWN_USER, user)
        if entry.nkey is not None:
            # a user name equal to an nkey: no password opens it (MQTT has no nonce)
            return self._refuse(client, kind, NKEY_NEEDS_SIGNATURE, user)
        # A user without a password logs in only by certificate or as no_auth_user
        # (nats-server would also take an empty password; we do not).
        try:
            ok = bool(entry.password) and check_password(entry.password, password)
        except AuthBusy:
            return self._refuse(client, kind, BUSY, user)
        if not ok:
            return self._refuse(client, kind, BAD_PASSWORD, user)
        return self._accept(
            client, kind, entry.name, entry.perms, entry.allowed_types, entry.account
        )

    def _no_auth(self, client: Any, realm: Realm, kind: str) -> str | None:
        entry = realm.users.get(realm.no_auth_user) or realm.lookup(realm.no_auth_user)
        if entry is None:
            return self._refuse(client, kind, UNKNOWN_USER, realm.no_auth_user)
        return self._accept(
            client, kind, entry.name, entry.perms, entry.allowed_types, entry.account
        )

    def _login_cert(self, client: Any, realm: Realm, kind: str) -> str | None:
        transport = getattr(client, "transport", None)
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        for name in cert_identities(ssl_object):
            entry = realm.lookup(name)
            if entry is not None and entry.nkey is None:  # nats-server maps users only
                return self._accept(
                    client, kind, entry.name, entry.perms, entry.allowed_types, entry.account
                )
        return self._refuse(client, kind, CERT_NOT_MAPPED, None)

    def _accept(
        self,
        client: Any,
        kind: str,
        name: str,
        perms: P.UserPermissions | None,
        allowed: frozenset[str] | None,
        account: str | None = None,
    ) -> str | None:
        if allowed is not None and kind not in allowed:
            return self._refuse(client, kind, CONNECTION_TYPE, name)
        client.perms = perms.for_client() if perms is not None else None
        if self.accounts:
            client.account = self.accounts[account or GLOBAL_ACCOUNT]
        return name

    def _refuse(self, client: Any, kind: str, reason: str, user: str | None) -> None:
        self.failures[reason] += 1
        client.perms = None
        log.warning(
            "%s:%s - cid:%s - %s authentication failed for user %r: %s",
            getattr(client, "ip", "?"),
            getattr(client, "port", "?"),
            getattr(client, "cid", "?"),
            kind,
            user or "",
            reason,
        )
        return None

    # -- slow checks -----------------------------------------------------------------

    def pending_nats(self, client: Any, connect: dict) -> tuple | None:
        """bcrypt work this CONNECT's check needs (run it off the loop first), or None."""
        realm = self.websocket if getattr(client, "ws", False) else self.nats
        if self.trust is not None:
            return None  # no bcrypt in operator mode
        return self._pending(
            realm, connect.get("user"), connect.get("pass"), connect.get("auth_token")
        )

    def pending_mqtt(
        self, client: Any, username: str | None, password: bytes | None
    ) -> tuple | None:
        realm = self.mqtt_ws if getattr(client, "ws", False) else self.mqtt
        if self.trust is not None:
            return None
        token = password if realm.token is not None else None
        return self._pending(realm, username, password, token)

    def _pending(self, realm: Realm, user: Any, password: Any, token: Any) -> tuple | None:
        if realm.tls_map:
            return None
        if realm.token is not None:
            return bcrypt_pending(realm.token, token) if isinstance(token, str | bytes) else None
        if not realm.required or not isinstance(user, str):
            return None
        entry = realm.lookup(user)
        if entry is None or not isinstance(password, str | bytes):
            return None
        return bcrypt_pending(entry.password, password)

    # -- authorization ---------------------------------------------------------------

    def may_publish(self, client: Any, subject: str, reply: str | None) -> bool:
        return client.perms.may_publish(subject)

    def may_subscribe(self, client: Any, subject: str, queue: str | None) -> bool:
        verdict = client.perms.subscribe(subject, queue)
        if verdict == P.PARTIAL:
            return self.filter_deliveries
        return verdict == P.ALLOW

    # -- TLS -------------------------------------------------------------------------

    def server_context(self, tls: TLSOptions | None) -> ssl.SSLContext | None:
        return server_context(tls)
