"""Request/answer over UDP with retransmission, as the Rust SDK's
`net::exchange_on`: pure, so it runs in host unit tests against
`testing.FakeGateway` and in the component over `net.UdpSocket`.

A socket here is any object with `send_to(data, addr)`,
`recv_until(buf_size, deadline_ns)` -> `(bytes, addr)` or `None` at the
deadline, and `now_ns()`. Addresses are `(ip_text, port)` tuples.
"""


class Timeout(Exception):
    """Nothing acceptable came back within the schedule and budget."""


IGNORE = object()
"""What a judge returns for a datagram that is not the answer (stray,
late, foreign): keep waiting."""


def exchange_on(io, to, request, schedule, budget_ns, judge):
    """Send `request` to `to` and return what `judge(bytes)` accepts: any
    value but `IGNORE` (raise in `judge` for a definite failure). Sends
    again after `schedule(n)` nanoseconds for attempt `n` (`None`: no more
    attempts) until `budget_ns` is spent; only datagrams from `to` are
    judged. Raises `Timeout` when nothing was accepted."""
    overall = io.now_ns() + budget_ns
    attempt = 0
    while True:
        wait = schedule(attempt)
        now = io.now_ns()
        if wait is None or now >= overall:
            raise Timeout("timed out")
        attempt += 1
        io.send_to(request, to)
        this_try = min(now + wait, overall)
        while True:
            got = io.recv_until(1500, this_try)
            if got is None:
                break
            data, source = got
            if source != to:
                continue
            verdict = judge(data)
            if verdict is not IGNORE:
                return verdict
