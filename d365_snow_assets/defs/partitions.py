"""Partitions shared by the asset graph."""

import dagster as dg

# Dynamic rather than static: the legal entities come from D365SNOW_LEGAL_ENTITIES at run time, and the code
# location must load (e.g. in `dagster dev`) before anyone has configured them. The CLI and the sensors register
# the configured ones before launching runs (`register_legal_entities`).
LEGAL_ENTITY = dg.DynamicPartitionsDefinition(name="legal_entity")


def register_legal_entities(instance: dg.DagsterInstance, legal_entities: list[str]) -> None:
    """Make every configured legal entity a partition key (idempotent, and safe when two runs start at once)."""
    name = LEGAL_ENTITY.name or "legal_entity"
    new = [le for le in legal_entities if le not in set(instance.get_dynamic_partitions(name))]
    if not new:
        return
    try:
        instance.add_dynamic_partitions(name, new)
    except Exception:
        # Another process registered the same keys between our read and write (a unique-constraint error whose
        # type depends on the storage backend); only a key that is still missing is a real failure.
        if set(new) - set(instance.get_dynamic_partitions(name)):
            raise
