"""A scripted gateway on a virtual clock, for a MOD's unit tests on the
host (no sockets, no broker): the Python twin of the Rust SDK's
`testing::FakeGateway`."""

from collections import deque


class FakeGateway:
    """A gateway at `addr` ((ip_text, port)) that answers each datagram
    sent to it with the list of datagrams `answer(n, request)` returns (`n`:
    how many it was sent before). Waiting for an answer that does not come
    moves the clock to the deadline at once.

    `sent` lists every (destination, bytes) in order."""

    def __init__(self, addr, answer):
        self.addr = addr
        self.answer = answer
        self.now = 0
        self.queue = deque()
        self.sent = []

    def inject(self, source, data):
        """Queue a datagram from `source` (a stray, a forgery)."""
        self.queue.append((bytes(data), source))

    def advance(self, ns):
        """Let `ns` nanoseconds pass."""
        self.now += ns

    def send_to(self, data, to):
        n = sum(1 for (a, _) in self.sent if a == self.addr)
        self.sent.append((to, bytes(data)))
        if to == self.addr:
            for reply in self.answer(n, bytes(data)):
                self.queue.append((bytes(reply), self.addr))

    def recv_until(self, size, deadline_ns):
        if self.now >= deadline_ns:
            return None
        if self.queue:
            data, source = self.queue.popleft()
            return data[:size], source
        self.now = max(self.now, deadline_ns)
        return None

    def now_ns(self):
        return self.now
