"""`log`: lines that land in the invocation's logs (written to stderr, one line per call)."""
from __future__ import annotations

import sys
from typing import Any, TextIO


class Logger:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def _emit(self, level: str, args: tuple[Any, ...]) -> None:
        if len(args) > 1 and isinstance(args[0], str) and "%" in args[0]:
            try:
                text = args[0] % args[1:]
            except (TypeError, ValueError):
                text = " ".join(str(a) for a in args)
        else:
            text = " ".join(str(a) for a in args)
        line = f"[{level}] " + text.replace("\n", "\n  ") + "\n"
        stream = self._stream or sys.stderr
        stream.write(line)

    def debug(self, *args: Any) -> None:
        self._emit("DEBUG", args)

    def info(self, *args: Any) -> None:
        self._emit("INFO", args)

    def warn(self, *args: Any) -> None:
        self._emit("WARN", args)

    warning = warn

    def error(self, *args: Any) -> None:
        self._emit("ERROR", args)

    def exception(self, *args: Any) -> None:
        """Like error(), followed by the traceback of the exception being handled."""
        import traceback

        self._emit("ERROR", (*args, traceback.format_exc().rstrip()))
