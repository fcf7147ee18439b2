"""The SFU: publications, subscriptions and the tracks between them. Knows no meetings."""

import logging

from media import ice, publisher
from media.errors import MediaError
from media.forwarder import Forwarder
from media.publisher import Publication
from media.subscriber import Subscription

logger = logging.getLogger(__name__)


class Sfu:
    """One per process. Ids are the caller's strings; track ids are "<name>/<mid>"."""

    def __init__(self, settings: ice.IceSettings | None = None) -> None:
        self.settings = settings or ice.IceSettings()
        self._publications: dict[str, Publication] = {}
        self._subscriptions: set[Subscription] = set()
        self._retired = (0, 0)  # forwarded by subscriptions that have ended

    @property
    def forwarders(self) -> dict[str, Forwarder]:
        return {tid: f for p in self._publications.values() for tid, f in p.forwarders.items()}

    async def publish(self, name: str, offer: str) -> tuple[Publication, str]:
        """Answer a publisher's offer; its tracks become subscribable as "<name>/<mid>"."""
        if not name or "/" in name:
            raise MediaError("bad_name", "a publication name is non-empty and has no '/'")
        if name in self._publications:
            raise MediaError("already_publishing", f"{name!r} already publishes")
        publication, answer = await publisher.answer(name, offer, self.settings)
        if name in self._publications:  # another publish() won while we awaited
            await publication.close()
            raise MediaError("already_publishing", f"{name!r} already publishes")
        self._publications[name] = publication
        return publication, answer

    async def unpublish(self, name: str) -> None:
        """Stop a publication; subscribers' feeds of it go quiet (remove them and re-offer)."""
        publication = self._publications.pop(name, None)
        if publication is not None:
            await publication.close()

    def subscribe(self) -> Subscription:
        subscription = Subscription(self.settings, self.track)
        self._subscriptions.add(subscription)
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.discard(subscription)
            await subscription.close()
            packets, octets = subscription.forwarded()
            self._retired = (self._retired[0] + packets, self._retired[1] + octets)
        else:
            await subscription.close()

    def forwarded(self) -> tuple[int, int]:
        """RTP packets and payload bytes forwarded to subscribers since the start (read at
        scrape time: the packet path only adds to each feed's own counters)."""
        packets, octets = self._retired
        for subscription in self._subscriptions:
            p, o = subscription.forwarded()
            packets += p
            octets += o
        return packets, octets

    @property
    def track_count(self) -> int:
        return sum(len(p.forwarders) for p in self._publications.values())

    def track(self, track_id: str) -> Forwarder:
        name, _, _ = track_id.rpartition("/")
        publication = self._publications.get(name)
        forwarder = publication.forwarders.get(track_id) if publication else None
        if forwarder is None:
            raise MediaError("unknown_track", f"no published track {track_id!r}")
        return forwarder

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        self._subscriptions.clear()
        for name in list(self._publications):
            await self.unpublish(name)
