"""The engine's state: the database engine and sessions, every engine table, credential
encryption. Only ``sync/`` and the shell above it import this package; the shell keeps
only its own tables (API keys' use, webhook replays, the console's users)."""
