"""Shared state: JSON documents under keys, changed atomically, in memory, SQLite or Redis."""
