"""Encrypted backups: the streaming file format and the key profiles that open it."""
