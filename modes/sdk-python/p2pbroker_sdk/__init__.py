"""Helpers for P2P Broker MODs written in Python (componentize-py).

- `exchange`: request/answer over UDP with retransmission, over any
  datagram socket (pure: no import of the component's bindings);
- `net`: that socket over wasi:sockets, inside the component;
- `testing`: a fake gateway on a virtual clock, for unit tests on the host.
"""
