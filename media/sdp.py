"""SDP from outside, read before aiortc sees it: bounds, parseability, and what each media
section of an offer means (JSEP, RFC 8829; BUNDLE, RFC 8843).

aiortc 1.16 knows neither `a=bundle-only` nor rejected sections: it reads `port 0` as nothing,
refuses a section without ICE credentials, `setup` or `rtcp-mux` (Firefox's stopped sections),
answers every section with a port and puts every mid in its answer's BUNDLE group. Here an
offer is read once into `Section`s; `Offer.for_aiortc()` is the offer aiortc can apply, and
`Offer.answer()` turns aiortc's answer into one that mirrors the offer.
"""

import copy
import re
from dataclasses import dataclass

from aiortc import sdp as aiortc_sdp

from media import hooks
from media.errors import MediaError

MAX_SDP_SIZE = 64 * 1024
MAX_MEDIA = 16
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
SENDING = ("sendrecv", "sendonly")
# The port JSEP puts on a live section whose address is carried by ICE (RFC 8829 5.2.1).
DISCARD_PORT = 9


@dataclass(frozen=True)
class Section:
    """One media section of an offer, as the SFU reads it.

    `accepted` is False for a section the offerer rejected or stopped (port 0 and not
    bundle-only, or outside the BUNDLE group): it carries nothing and is answered with port 0.
    A bundle-only section (port 0, `a=bundle-only`, in the BUNDLE group) is live: its media
    rides the bundle's transport.
    """

    index: int
    mid: str
    kind: str
    direction: str
    bundle_only: bool
    accepted: bool

    @property
    def sends(self) -> bool:
        return self.accepted and self.direction in SENDING


class Offer:
    """A checked offer: its parsed description, its sections, its BUNDLE group."""

    def __init__(self, text: str, description: aiortc_sdp.SessionDescription) -> None:
        self.text = text
        self.description = description
        group = next((g for g in description.group if g.semantic == "BUNDLE"), None)
        self.bundle: list[str] = [str(mid) for mid in group.items] if group else []
        flags = _bundle_only_flags(text)
        self.sections: list[Section] = []
        for index, media in enumerate(description.media):
            mid = str(media.rtp.muxId)
            bundle_only = flags[index] if index < len(flags) else False
            # Port 0 is live only as a bundle-only member of the group (not its first).
            accepted = media.port != 0 or (bundle_only and mid in self.bundle[1:])
            direction = media.direction or "sendrecv"  # RFC 4566: no attribute means sendrecv
            self.sections.append(Section(index, mid, media.kind, direction, bundle_only, accepted))

    @property
    def sending(self) -> dict[str, str]:
        """The sections that send: {mid: kind}."""
        return {s.mid: s.kind for s in self.sections if s.sends}

    @property
    def rejected(self) -> set[str]:
        """The mids of the sections the offerer rejected or stopped."""
        return {s.mid for s in self.sections if not s.accepted}

    def for_aiortc(self) -> str:
        """The offer as aiortc can apply it: every accepted section with a port and the
        bundle's transport; every rejected one as an inactive member of the bundle (so aiortc
        neither refuses it nor gives it an ICE transport of its own that never connects)."""
        description = copy.deepcopy(self.description)
        transport = _transport_section(self, description)
        for section, media in zip(self.sections, description.media, strict=True):
            if media.rtcp_mux and media.rtcp_port is None:
                # aiortc writes a=rtcp-mux only after an a=rtcp line, which Firefox omits.
                media.rtcp_host, media.rtcp_port = "0.0.0.0", DISCARD_PORT
            if section.accepted and media.port != 0:
                continue
            media.port = DISCARD_PORT
            media.rtcp_mux = True
            media.rtcp_host, media.rtcp_port = "0.0.0.0", DISCARD_PORT
            if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
                media.ice = copy.deepcopy(transport.ice)
            if media.dtls is None or not media.dtls.fingerprints:
                media.dtls = copy.deepcopy(transport.dtls)
            if section.accepted:
                continue
            media.direction = "inactive"
            media.ice_candidates = []
            media.ice_candidates_complete = False
            if not hooks.common_codecs(media.kind, media.rtp.codecs):
                # Firefox's stopped section names a payload type without its rtpmap.
                media.rtp.codecs = [hooks.default_codec(media.kind)]
                media.fmt = [c.payloadType for c in media.rtp.codecs]
        if self.bundle:
            group = next(g for g in description.group if g.semantic == "BUNDLE")
            members: list[int | str] = [m for m in self.bundle if m not in self.rejected]
            group.items = members + [s.mid for s in self.sections if not s.accepted]
        return str(description)

    def answer(self, text: str) -> str:
        """aiortc's answer made to mirror this offer: a rejected or stopped section answered
        with port 0 and left out of the BUNDLE group, which holds the offer's accepted mids."""
        description = aiortc_sdp.SessionDescription.parse(text)
        description.type = "answer"
        rejected = self.rejected
        for media in description.media:
            if media.kind == "audio":
                _ask_for_fec(media)
            if str(media.rtp.muxId) not in rejected:
                continue
            media.port = 0
            media.direction = "inactive"
            media.ice_candidates = []
            media.ice_candidates_complete = False
            media.ssrc = []
            media.ssrc_group = []
            media.msid = None
        if self.bundle:
            accepted: list[int | str] = [m for m in self.bundle if m not in rejected]
            for group in description.group:
                if group.semantic == "BUNDLE":
                    group.items = list(accepted)
        return str(description)


# Opus parameters of the answer: the publisher's encoder adds in-band FEC (RFC 7587), so a
# voice survives lost packets on any subscriber's link without anything re-encoded here.
OPUS_FEC = {"minptime": 10, "useinbandfec": 1}


def _ask_for_fec(media: aiortc_sdp.MediaDescription) -> None:
    for codec in media.rtp.codecs:
        if codec.mimeType.lower() == "audio/opus":
            codec.parameters = {**codec.parameters, **OPUS_FEC}


def _bundle_only_flags(text: str) -> list[bool]:
    """For each media section in order, whether it carries `a=bundle-only` (aiortc's parser
    drops the attribute)."""
    parts = re.split(r"\r?\nm=", text)[1:]
    return [bool(re.search(r"^a=bundle-only\s*$", part, re.MULTILINE)) for part in parts]


def _transport_section(
    offer: Offer, description: aiortc_sdp.SessionDescription
) -> aiortc_sdp.MediaDescription:
    """The section whose ICE and DTLS parameters the bundle uses: the group's first (tagged)
    section, else the first live one."""
    if offer.bundle:
        return next(m for m in description.media if str(m.rtp.muxId) == offer.bundle[0])
    return next(m for m in description.media if m.port != 0)


def check(text: object, max_media: int = MAX_MEDIA) -> Offer:
    """The checked description and its sections, or MediaError("bad_sdp" | "too_many_media" |
    "unsupported_media" | "unsupported_codec")."""
    if not isinstance(text, str) or not text.strip():
        raise MediaError("bad_sdp", "SDP must be a non-empty string")
    media = text.count("\nm=")
    if media > max_media:
        raise MediaError("too_many_media", f"SDP has {media} media sections, at most {max_media}")
    if len(text) > MAX_SDP_SIZE:
        raise MediaError("bad_sdp", f"SDP is longer than {MAX_SDP_SIZE} characters")
    if not text.startswith("v=0"):
        raise MediaError("bad_sdp", "SDP must start with v=0")
    try:
        description = aiortc_sdp.SessionDescription.parse(text)
    except Exception as exc:
        raise MediaError("bad_sdp", f"SDP cannot be parsed: {exc}") from None
    if not description.media:
        raise MediaError("bad_sdp", "SDP has no media sections")
    mids = [m.rtp.muxId for m in description.media]
    if not all(mids) or len(set(mids)) != len(mids):
        raise MediaError("bad_sdp", "each media section needs its own a=mid")
    for group in description.group:
        if group.semantic == "BUNDLE" and not set(group.items) <= set(mids):
            raise MediaError("bad_sdp", "the BUNDLE group names a media section that is missing")
    offer = Offer(text, description)
    if offer.bundle and not offer.sections[mids.index(offer.bundle[0])].accepted:
        raise MediaError("bad_sdp", "the first section of the BUNDLE group must have a port")
    if not any(s.accepted for s in offer.sections):
        raise MediaError("bad_sdp", "SDP has no live media section")
    by_mid = {str(m.rtp.muxId): m for m in description.media}
    transport = by_mid[offer.bundle[0]] if offer.bundle else None
    for section, m in zip(offer.sections, description.media, strict=True):
        if m.kind not in ("audio", "video"):
            raise MediaError("unsupported_media", f"media kind {m.kind!r} is not supported")
        if not section.accepted:
            continue  # a rejected or stopped section carries nothing
        if m.direction not in DIRECTIONS:
            raise MediaError("bad_sdp", "each media section needs a direction attribute")
        carrier = transport if section.bundle_only and transport is not None else m
        if not _has_transport(m) and not _has_transport(carrier):
            raise MediaError(
                "bad_sdp", "each media section needs ICE credentials and a DTLS fingerprint"
            )
    try:
        offer.for_aiortc()
    except Exception as exc:  # aiortc parses what it cannot write back (c=IN IP4 0)
        raise MediaError("bad_sdp", f"SDP cannot be used: {exc}") from None
    return offer


def _has_transport(media: aiortc_sdp.MediaDescription) -> bool:
    ice, dtls = media.ice, media.dtls
    return bool(ice and ice.usernameFragment and dtls and dtls.fingerprints)


def sending(offer: Offer) -> dict[str, str]:
    """The media sections that send ({mid: kind}) in a checked offer."""
    return offer.sending


def unsupported(offer: Offer) -> list[Section]:
    """Accepted sections offering no codec aiortc can receive (refused before aiortc sees
    them: aiortc would fail half-way through applying the offer)."""
    return [
        s
        for s, m in zip(offer.sections, offer.description.media, strict=True)
        if s.accepted and not hooks.common_codecs(m.kind, m.rtp.codecs)
    ]


class Answer:
    """A subscriber's checked answer to one of our offers.

    A browser rejects a section it cannot receive (Firefox without H.264 answers an H.264
    section with port 0, no ICE or DTLS attributes, the codec it would have liked, and leaves it
    out of its BUNDLE group). aiortc knows no rejected sections in answers either: it refuses the
    section, or gives it an ICE transport of its own that never connects. `for_aiortc()` is the
    answer aiortc can apply: each rejected section an inactive member of the bundle.
    """

    def __init__(self, answer: Offer, offer: str) -> None:
        self.description = answer.description
        self.bundle = answer.bundle
        self._offer = aiortc_sdp.SessionDescription.parse(offer)
        # In an answer, port 0 is a rejection whatever the group says (JSEP 5.3.1).
        self.rejected: set[str] = {
            str(m.rtp.muxId) for m in answer.description.media if m.port == 0
        }

    def for_aiortc(self) -> str:
        description = copy.deepcopy(self.description)
        live = [m for m in description.media if m.port != 0]
        transport = next(
            (m for m in live if self.bundle and str(m.rtp.muxId) == self.bundle[0]), live[0]
        )
        offered = {str(m.rtp.muxId): m for m in self._offer.media}
        for media in description.media:
            if media.rtcp_mux and media.rtcp_port is None:
                # aiortc writes a=rtcp-mux only after an a=rtcp line, which Firefox omits.
                media.rtcp_host, media.rtcp_port = "0.0.0.0", DISCARD_PORT
            if media.port != 0:
                continue
            _inactive_on(media, transport)
            # The answerer names a codec it would have liked (VP8 for our H.264): aiortc must
            # find our own offered codec to apply the section at all; nothing is sent on it.
            ours = offered[str(media.rtp.muxId)]
            media.rtp.codecs = copy.deepcopy(ours.rtp.codecs)
            media.fmt = [c.payloadType for c in media.rtp.codecs]
        group = next((g for g in description.group if g.semantic == "BUNDLE"), None)
        if group is not None:
            members: list[int | str] = [m for m in group.items if str(m) not in self.rejected]
            group.items = members + [mid for mid in offered if mid in self.rejected]
        return str(description)


def _inactive_on(
    media: aiortc_sdp.MediaDescription, transport: aiortc_sdp.MediaDescription
) -> None:
    """Make a rejected section an inactive one riding `transport`'s ICE and DTLS (aiortc
    needs both on every section, and a port, to bundle it rather than refuse it)."""
    media.port = DISCARD_PORT
    media.direction = "inactive"
    media.rtcp_mux = True
    media.rtcp_host, media.rtcp_port = "0.0.0.0", DISCARD_PORT
    media.ice = copy.deepcopy(transport.ice)
    media.dtls = copy.deepcopy(transport.dtls)
    media.ice_candidates = []
    media.ice_candidates_complete = False
    media.ssrc = []
    media.ssrc_group = []
    media.msid = None


def check_answer(text: object, offer: str, max_media: int = MAX_MEDIA) -> Answer:
    """A subscriber's answer to `offer` (our own), checked as `check()` checks an offer, with
    the same sections in the same order; MediaError("bad_sdp" | ...) otherwise."""
    answer = check(text, max_media)
    ours = [str(m.rtp.muxId) for m in aiortc_sdp.SessionDescription.parse(offer).media]
    if [s.mid for s in answer.sections] != ours:
        raise MediaError("bad_sdp", "the answer's media sections are not those of the offer")
    return Answer(answer, offer)
