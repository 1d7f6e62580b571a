"""Subject validators and the MQTT topic <-> NATS subject mapping (hybridbus.subjects)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridbus.router import Sublist, Subscription
from hybridbus.subjects import (
    _encode_level,
    filter_skips_dollar,
    filter_to_subjects,
    is_valid_publish_subject,
    is_valid_queue_name,
    is_valid_subject,
    is_valid_topic_filter,
    is_valid_topic_name,
    subject_to_topic,
    topic_to_subject,
)

PROPS = settings(max_examples=200, deadline=None)

# -- NATS subject validators -------------------------------------------------------

VALID_SUBJECTS = ["a", "a.b", "*", ">", "a.*", "a.>", "*.*.>", "a*", "a>.b", "a.b>", "é.日本"]
VALID_SUBJECTS += ["a\u3000b", "%", "%2E.x", "a-b_c.$SYS", "a\x01b"]
INVALID_SUBJECTS = ["", ".", "a.", ".a", "a..b", "a.>.b", ">.a", ">.>", "a b", "a\tb", "a\nb"]
INVALID_SUBJECTS += ["a\rb", "a\fb", "a\vb", " a", "a ", "a.b\r\n"]


@pytest.mark.parametrize("subject", VALID_SUBJECTS)
def test_valid_subject(subject):
    assert is_valid_subject(subject)


@pytest.mark.parametrize("subject", INVALID_SUBJECTS)
def test_invalid_subject(subject):
    assert not is_valid_subject(subject)
    assert not is_valid_publish_subject(subject)


@pytest.mark.parametrize("subject", ["a", "a.b", "a*", "a>.b", "%", "é.x", "$JS.API.INFO"])
def test_valid_publish_subject(subject):
    assert is_valid_publish_subject(subject)


@pytest.mark.parametrize("subject", ["*", ">", "a.*", "a.>", "*.b", "a.*.b"])
def test_wildcard_is_not_a_publish_subject(subject):
    assert is_valid_subject(subject)
    assert not is_valid_publish_subject(subject)


@pytest.mark.parametrize("queue", ["q", "q.1", "workers-a", "é", "$share"])
def test_valid_queue_name(queue):
    assert is_valid_queue_name(queue)


@pytest.mark.parametrize("queue", ["", "a b", "\t", "q\n", None, b"q"])
def test_invalid_queue_name(queue):
    assert not is_valid_queue_name(queue)


# -- MQTT topic validators ------------------------------------------------------------

# [MQTT-4.7.3-3]: 65535 bytes of UTF-8 at most. "é" is 2 bytes.
LONGEST_ASCII = "a" * 65535
LONGEST_2BYTE = "é" * 32767 + "a"


@pytest.mark.parametrize(
    "topic",
    ["a", "/", "//", "a/b", "a b", "$SYS/x", "*", ">", "a.b", "%", "é", "\x01", LONGEST_ASCII],
)
def test_valid_topic_name(topic):
    assert is_valid_topic_name(topic)
    assert is_valid_topic_filter(topic)


def test_longest_multibyte_topic_name():
    assert len(LONGEST_2BYTE.encode()) == 65535
    assert is_valid_topic_name(LONGEST_2BYTE)
    assert not is_valid_topic_name(LONGEST_2BYTE + "a")


@pytest.mark.parametrize(
    "topic",
    [
        "",  # [MQTT-4.7.3-1]
        "a\x00b",  # [MQTT-4.7.3-2]
        "a" * 65536,  # [MQTT-4.7.3-3]
        "é" * 32768,
        "\ud800",  # lone surrogate: not UTF-8 [MQTT-1.5.3-1]
        "a/+",  # [MQTT-4.7.1-1]
        "a/#",
        "+",
        "#",
        "a+b",
        "a#b",
    ],
)
def test_invalid_topic_name(topic):
    assert not is_valid_topic_name(topic)


@pytest.mark.parametrize("topic_filter", ["#", "+", "+/+", "a/+/b", "+/#", "a/#", "/#", "a//#"])
def test_valid_topic_filter(topic_filter):
    assert is_valid_topic_filter(topic_filter)


@pytest.mark.parametrize(
    "topic_filter",
    [
        "",  # [MQTT-4.7.3-1]
        "a\x00",  # [MQTT-4.7.3-2]
        "+" * 65536,  # [MQTT-4.7.3-3]
        "a/#/b",  # [MQTT-4.7.1-2]: '#' last
        "#/",
        "a#",
        "#a",
        "a/b#",
        "##",
        "a+",  # [MQTT-4.7.1-3]: '+' alone in its level
        "+a/b",
        "a/++",
        "\udfff/#",
    ],
)
def test_invalid_topic_filter(topic_filter):
    assert not is_valid_topic_filter(topic_filter)
    with pytest.raises(ValueError):
        filter_to_subjects(topic_filter)


@pytest.mark.parametrize(
    ("topic_filter", "skips"),
    [("#", True), ("+", True), ("+/a", True), ("+/+/#", True), ("a/#", False)]
    + [("$SYS/#", False), ("/+", False), ("a/+", False), ("a", False)],
)
def test_filter_skips_dollar(topic_filter, skips):
    # [MQTT-4.7.2-1]
    assert filter_skips_dollar(topic_filter) is skips


# -- topic <-> subject: examples ---------------------------------------------------------

MAPPING = [
    ("a/b", "a.b"),
    ("a", "a"),
    ("$SYS/broker/load", "$SYS.broker.load"),
    # The corners nats-server mangles or rejects:
    ("dot.ted/x", "dot%2Eted.x"),
    ("/lead", "%.lead"),
    ("trail/", "trail.%"),
    ("dbl//slash", "dbl.%.slash"),
    ("/", "%.%"),
    ("//", "%.%.%"),
    ("a b/c", "a%20b.c"),
    (" ", "%20"),
    ("tab\there", "tab%09here"),
    ("new\nline\r", "new%0Aline%0D"),
    ("del\x7f", "del%7F"),
    ("\x01ctl", "%01ctl"),
    ("é/日本/😀", "é.日本.😀"),
    ("ideographic\u3000space/nb\u00a0sp", "ideographic\u3000space.nb\u00a0sp"),
    ("*", "%2A"),
    (">", "%3E"),
    ("a/*/b", "a.%2A.b"),
    ("a/>", "a.%3E"),
    ("a*/b>/*c/>d", "a*.b>.*c.>d"),
    ("%", "%25"),
    ("%25", "%2525"),
    ("%2A", "%252A"),
    ("50%/off", "50%25.off"),
    ("a.b.c", "a%2Eb%2Ec"),
    ("...", "%2E%2E%2E"),
    ("x/./y", "x.%2E.y"),
]


@pytest.mark.parametrize(("topic", "subject"), MAPPING)
def test_topic_to_subject_examples(topic, subject):
    assert topic_to_subject(topic) == subject
    assert subject_to_topic(subject) == topic
    assert is_valid_publish_subject(subject)


def test_mapping_table_is_injective():
    assert len({s for _, s in MAPPING}) == len(MAPPING)


@pytest.mark.parametrize(
    ("topic_filter", "subjects"),
    [
        ("a/b", ["a.b"]),
        ("a/+", ["a.*"]),
        ("+", ["*"]),
        ("#", [">"]),
        ("a/#", ["a", "a.>"]),
        ("a/+/#", ["a.*", "a.*.>"]),
        ("+/+", ["*.*"]),
        ("+/", ["*.%"]),
        ("/#", ["%", "%.>"]),
        ("a//#", ["a.%", "a.%.>"]),
        ("dot.ted/+", ["dot%2Eted.*"]),
        ("*/#", ["%2A", "%2A.>"]),
        ("$SYS/#", ["$SYS", "$SYS.>"]),
        ("a b/>", ["a%20b.%3E"]),
    ],
)
def test_filter_to_subjects_examples(topic_filter, subjects):
    assert filter_to_subjects(topic_filter) == subjects
    assert all(is_valid_subject(s) for s in subjects)


@pytest.mark.parametrize(
    ("subject", "topic"),
    [
        ("a.+", "a/%2B"),
        ("a.#", "a/%23"),
        ("a/b", "a%2Fb"),
        ("a.b/c", "a/b%2Fc"),
        ("a\x00b", "a%00b"),
        ("50%off", "50%off"),
        ("%C3%A9", "%C3%A9"),
        ("a%2fb", "a%2Fb"),
        ("a%2eb", "a.b"),
        ("a%2Bb", "a%2Bb"),
        ("a%00", "a%00"),
        ("%", "%"),
        ("a.%", "a/"),
        ("%.%", "/"),
        ("a.*", "a/*"),
        ("a.>", "a/>"),
        ("%%", "%%"),
        ("%2", "%2"),
        ("%zz", "%zz"),
        ("%20", " "),
        ("%25%", "%%"),
    ],
)
def test_subject_to_topic_nats_native(subject, topic):
    assert subject_to_topic(subject) == topic
    assert is_valid_topic_name(topic)


@pytest.mark.parametrize("subject", ["a.+", "50%off", "a%2fb", "%", "a.*", "%C3%A9"])
def test_nats_mqtt_nats_is_not_always_the_identity(subject):
    # The documented lossy corner: NATS-native escapes come back in canonical form.
    back = topic_to_subject(subject_to_topic(subject))
    assert back != subject
    assert is_valid_publish_subject(back)
    # ...but from there on the trip is stable.
    assert topic_to_subject(subject_to_topic(back)) == back


# -- topic <-> subject: properties ---------------------------------------------------------

# Every valid topic name: any text without U+0000, '+', '#' or lone surrogates.
topic_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#"), min_size=1
)
TRICKY_LEVELS = ["", "a", "b", ".", "*", ">", "%", "%25", "%2E", " ", "\t", "é", "a.b", "x*", "$"]
tricky_level = st.one_of(
    st.sampled_from(TRICKY_LEVELS), topic_text.map(lambda t: t.replace("/", ""))
)
tricky_topic = st.lists(tricky_level, min_size=1, max_size=6).map("/".join).filter(bool)
any_topic = st.one_of(topic_text, tricky_topic)


@PROPS
@given(topic=any_topic)
def test_topic_round_trip_is_the_identity(topic):
    assert is_valid_topic_name(topic)
    subject = topic_to_subject(topic)
    assert is_valid_publish_subject(subject), subject
    assert subject_to_topic(subject) == topic
    # One MQTT level is one NATS token.
    assert subject.count(".") == topic.count("/")
    # The fast path gives what the general escaping gives.
    assert subject == ".".join(_encode_level(level) for level in topic.split("/"))


@PROPS
@given(a=any_topic, b=any_topic)
def test_distinct_topics_give_distinct_subjects(a, b):
    assert (topic_to_subject(a) == topic_to_subject(b)) == (a == b)


nats_token = st.one_of(
    st.sampled_from(["a", "%", "%%", "%2", "%2F", "%2e", "%41", "%C3", "/", "+", "#", "\x00", "*"]),
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters=". \t\n\r\f\v"),
        min_size=1,
        max_size=8,
    ),
)
nats_subject = st.lists(nats_token, min_size=1, max_size=5).map(".".join)


@PROPS
@given(subject=nats_subject)
def test_any_nats_subject_gives_a_valid_topic(subject):
    topic = subject_to_topic(subject)
    assert is_valid_topic_name(topic), topic
    # NATS -> MQTT -> NATS reaches a fixed point after one trip.
    canonical = topic_to_subject(topic)
    assert is_valid_publish_subject(canonical)
    assert subject_to_topic(canonical) == topic


def mqtt_matches(topic: str, topic_filter: str, dollar_rule: bool = False) -> bool:
    """MQTT topic matching written out plainly ([MQTT-4.7.1-2], [MQTT-4.7.1-3])."""
    if dollar_rule and topic.startswith("$") and topic_filter[:1] in ("#", "+"):
        return False  # [MQTT-4.7.2-1]
    t = topic.split("/")
    f = topic_filter.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True  # also the parent level: "a/#" matches "a"
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(t) == len(f)


MATCH_LEVELS = ["a", "b", "", "*", ">", ".", "%", "$x", " "]
# Filtered: "" is neither a topic name nor a filter [MQTT-4.7.3-1].
match_topic = st.lists(st.sampled_from(MATCH_LEVELS), min_size=1, max_size=4).map("/".join)
match_topic = match_topic.filter(bool)


@st.composite
def match_filter(draw) -> str:
    levels = draw(st.lists(st.sampled_from([*MATCH_LEVELS, "+", "+"]), min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


@PROPS
@given(topic=match_topic, topic_filter=match_filter().filter(bool))
def test_matching_is_preserved(topic, topic_filter):
    assert is_valid_topic_filter(topic_filter)
    for cache in (True, False):
        sl = Sublist(cache=cache)
        for s in filter_to_subjects(topic_filter):
            sl.insert(Subscription(s, None, None, s))
        subject = topic_to_subject(topic)
        routed = bool(sl.match(subject).plain)
        assert routed == mqtt_matches(topic, topic_filter)
        # With the MQTT layer's '$' check on top, the full MQTT rule holds.
        delivered = routed and not (topic.startswith("$") and filter_skips_dollar(topic_filter))
        assert delivered == mqtt_matches(topic, topic_filter, dollar_rule=True)


def test_matching_examples():
    # Spot checks of the property above, readable on their own.
    cases = [
        ("a/b", "a/#", True),
        ("a", "a/#", True),
        ("ab", "a/#", False),
        ("/", "+/+", True),
        ("/", "#", True),
        ("a/*", "a/+", True),
        ("a/*", "a/*", True),
        ("a/x", "a/*", False),
        ("a/>", "a/>", True),
        ("a/x/y", "a/>", False),
        ("dot.ted", "dot.ted", True),
        ("dot/ted", "dot.ted", False),
        ("$SYS/x", "#", False),
        ("$SYS/x", "+/x", False),
        ("$SYS/x", "$SYS/#", True),
    ]
    for topic, topic_filter, want in cases:
        sl = Sublist()
        for s in filter_to_subjects(topic_filter):
            sl.insert(Subscription(s, None, None, s))
        routed = bool(sl.match(topic_to_subject(topic)).plain)
        got = routed and not (topic.startswith("$") and filter_skips_dollar(topic_filter))
        assert got is want, (topic, topic_filter)


@pytest.mark.parametrize(
    ("filter_subject", "subject", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        (">", "x", True),
        ("*.b", "a.c", False),
        ("a.*", "a..b", False),  # an empty token matches nothing
    ],
)
def test_subject_matches(filter_subject, subject, expected):
    from hybridbus.subjects import subject_matches

    assert subject_matches(filter_subject, subject) is expected
