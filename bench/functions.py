"""The function every benchmark deploys, and the event it is invoked with."""
from __future__ import annotations

# The smallest useful handler: reads the event, returns a small result, prints nothing.
HELLO_PY = 'def main(event, context):\n    return {"hello": event.get("name", "world")}\n'
EVENT = b'{"name":"bench"}'
