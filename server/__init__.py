"""flashsnap-mcp: an MCP server for neuroflash and NeuralSnap."""

__version__ = "0.1.0"
