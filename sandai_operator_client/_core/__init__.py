"""The anyio core: connections, the result hub, publishers, and every client behaviour (private)."""
