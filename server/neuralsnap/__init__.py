"""NeuralSnap: its typed client, wire models, and the service the tools call."""
