"""How MCP clients reach the server: stdio, Streamable HTTP and SSE, and their guards and limits."""
