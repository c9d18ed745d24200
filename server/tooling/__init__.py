"""How a tool is declared, selected, called and asks the user first: the spine every tool call runs through."""
