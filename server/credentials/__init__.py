"""Credentials: the neuroflash token manager, its shared lease, and the `httpx2.Auth` flows of both upstreams."""
