"""Flow control: bounded work per turn of the loop, slices for big fan-outs, and
backpressure from receivers to publishers.

Theory of operation
-------------------
One event loop serves every connection, so no single read may hold it for long,
however many receivers its messages have: a PINGREQ or a NATS PING on another
connection must be answered within milliseconds while a publisher floods 10,000
subscribers or one message goes to 100,000 offline sessions.

* Work is counted in deliveries (``Server.work``, one per receiver per message).
  A connection's read loop (``_process``) looks at the counter once per op; past
  ``WORK_CHECK`` deliveries it looks at the clock, and once the read has taken
  ``TURN_BUDGET`` it stops: the rest of the read waits for the next turn of the
  loop with the connection's reading paused (``ClientBase.hold_input``), so other
  connections' input is handled in between. One comparison per op is all the
  common case pays.
* A run of messages to one subject (``Server.route_run``) is cut so that it makes
  at most ``RUN_WORK`` deliveries at once; the read loop routes the rest after the
  check above.
* One message with more than ``FANOUT_SLICE`` receivers becomes a ``FanoutJob``:
  ``FANOUT_SLICE`` receivers per turn of the loop, a flush after each slice, and
  the publisher's input held until the last slice (so its next message cannot
  overtake this one, and a publisher faster than the fan-out is slowed by TCP).
  The MQTT acknowledgement of the message waits for the whole job: the job holds
  the read's durability ticket (``Persistence.hold_ticket``).

Backpressure (``ClientBase.congest``, ``Server.note_congested``): a receiver whose
unsent bytes pass a soft limit (``output_soft_limit``), or an online MQTT session
whose queued QoS 1/2 messages pass ``SESSION_QUEUE_HIGH`` messages or
``SESSION_QUEUE_BYTES``, is *congested*, and the connection whose read fed it stops
reading. Unsent bytes hold it for ``STALL`` at most (as nats-server stalls a
producer): a receiver that stops reading is cut once over ``max_pending``, and
must not stop its publishers meanwhile. Queued acknowledged messages hold it until
they drain: an online session never drops them, however fast the publisher. A
receiver congested for longer than ``write_deadline`` is stuck, and cut.
"""

WORK_CHECK = 1024  # deliveries between two looks at the clock
TURN_BUDGET = 0.005  # seconds one read may route before it yields the loop
RUN_WORK = 8192  # deliveries one run of messages may make at once
FANOUT_SLICE = 2048  # receivers served per turn of the loop for one message
STALL = 0.01  # at most this long a publisher waits for a receiver's unsent bytes
FANOUT_RUN = 64  # messages of a run one fan-out job takes to thousands of receivers

# An online MQTT session is congested while it queues (beyond its in-flight window)
# more than this many QoS 1/2 messages or bytes of payload, and no longer once the
# queue is down to a quarter of both.
SESSION_QUEUE_HIGH = 1000
SESSION_QUEUE_BYTES = 4 << 20
# The in-flight window in bytes, beside the window in messages: a 1 MB stream flows
# at the link's speed with bounded memory (one message is always allowed).
INFLIGHT_BYTES = 4 << 20
# What an MQTT connection whose input is held (a fan-out job, a congested receiver)
# still reads and keeps, answering its PINGREQs, before it stops reading.
READ_AHEAD = 256 << 10
