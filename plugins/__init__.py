"""kdbench's built-in plugins (importable as `kdbench_plugins`).

Each module is one method, pair or dataset, registered through the entry-point group
``kdbench`` in pyproject.toml — the same door a third-party plugin uses.
"""
