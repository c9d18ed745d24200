"""Typed clients of the two upstream APIs, one shared `httpx2.AsyncClient` each."""
