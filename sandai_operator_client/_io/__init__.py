"""I/O: the event-loop adapters, sockets, RESP connections and the AMQP publisher (anyio, no behaviour)."""
