"""Server tests run the real uvicorn server on a free localhost port (see aris.server.local)."""

from aris.server.local import free_port, live_server

__all__ = ["free_port", "live_server"]
