"""Field names on the wire and in documents: the seed's camelCase (candidateId, createdAt)."""


def camel(name: str) -> str:
    """``candidate_id`` → ``candidateId``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
