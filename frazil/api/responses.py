"""JSON responses encoded with orjson (fast, and handles what our records hold)."""
from typing import Any

import orjson
from starlette.responses import JSONResponse as _StarletteJSONResponse


class JSONResponse(_StarletteJSONResponse):
    """A JSON response (a subclass of Starlette's, so that FastAPI documents a route's response
    model under it), rendered by orjson."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
