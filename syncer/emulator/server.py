"""The emulator behind a real HTTP server: ``EmulatorServer`` (tests and demos use a loopback
port), ``serve()`` (blocking, for ``syncer emulator``) and ``python -m syncer.emulator.server``.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from syncer.emulator.config import PLATFORMS, EmulatorConfig
from syncer.emulator.emulator import Emulator
from syncer.emulator.http import LoopbackServer

__all__ = ["EmulatorServer", "serve"]


class EmulatorServer:
    """The emulator behind a real HTTP server, serving from a daemon thread."""

    def __init__(
        self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.emulator = Emulator(config or EmulatorConfig())
        self._server = LoopbackServer(self.emulator, host, port, "backmarket-emulator")

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def start(self) -> EmulatorServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        self.emulator.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(config: EmulatorConfig, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT (for ``syncer emulator``)."""
    server = EmulatorServer(config, host, port).start()
    print(f"Back Market emulator listening on {server.base_url}", flush=True)
    stopping = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stopping.set())
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        for number, handler in previous.items():
            if handler is not None:
                signal.signal(number, handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m syncer.emulator.server", description="A local Back Market seller API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--token", action="append", help="accepted token (repeatable)")
    parser.add_argument("--platform", choices=sorted(PLATFORMS), default="EU")
    parser.add_argument("--task-delay", type=float, default=2.0)
    parser.add_argument("--warranty-min", type=int, default=6)
    parser.add_argument("--state", help="SQLite file keeping the model across restarts")
    parser.add_argument("--realistic", action="store_true",
                        help="behave as production integrations observed (module docstring)")
    args = parser.parse_args(argv)
    config = EmulatorConfig(
        tokens=tuple(args.token or ("emulator-token",)),
        platform=args.platform,
        task_delay=args.task_delay,
        warranty_min=args.warranty_min,
        state_path=args.state,
        realistic=args.realistic,
    )
    serve(config, args.host, args.port)


if __name__ == "__main__":
    main()
