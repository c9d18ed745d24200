"""What the server offers besides tools: instructions and prompts, resources, asking the user first, change notices."""
