"""Raised hands, in the order they went up: the floor goes to the first."""


class HandQueue:
    def __init__(self) -> None:
        # dict keeps insertion order: first raised first.
        self._ids: dict[str, None] = {}

    def raise_hand(self, participant_id: str) -> bool:
        """Raise; False when it was already up (its place in the queue is kept)."""
        if participant_id in self._ids:
            return False
        self._ids[participant_id] = None
        return True

    def lower(self, participant_id: str) -> bool:
        """Lower; False when it was not up."""
        if participant_id not in self._ids:
            return False
        del self._ids[participant_id]
        return True

    def __contains__(self, participant_id: object) -> bool:
        return participant_id in self._ids

    def ids(self) -> list[str]:
        return list(self._ids)
