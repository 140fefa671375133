"""Gone: ``sandai.operator_client.async_transport`` was the seed's asyncio adapter over Celery.

See the migration guide (docs/migration.md).
"""

raise ImportError(
    "sandai.operator_client.async_transport was the seed's asyncio adapter over Celery and is gone: "
    "this client speaks the protocol itself. Use the clients' methods (create_client / "
    "create_async_client); the sans-IO protocol code is in sandai_operator_client.protocol. "
    "See the migration guide (docs/migration.md)."
)
