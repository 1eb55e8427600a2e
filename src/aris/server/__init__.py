"""The Aris server: an OpenAI-compatible API with DICOM smarts, a task API, MCP tools and a web UI."""

from aris.server.app import create_app

__all__ = ["create_app"]
