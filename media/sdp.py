"""Checks on SDP from outside before aiortc sees it: size, media count, parseability."""

from aiortc import sdp as aiortc_sdp

from media.errors import MediaError

MAX_SDP_SIZE = 64 * 1024
MAX_MEDIA = 16


def check(text: object, max_media: int = MAX_MEDIA) -> aiortc_sdp.SessionDescription:
    """The parsed description, or MediaError("bad_sdp" | "too_many_media")."""
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
    for m in description.media:
        if m.port == 0:
            continue  # a rejected or stopped section carries nothing
        if m.direction not in ("sendrecv", "sendonly", "recvonly", "inactive"):
            raise MediaError("bad_sdp", "each media section needs a direction attribute")
        if m.kind not in ("audio", "video"):
            raise MediaError("unsupported_media", f"media kind {m.kind!r} is not supported")
        if m.ice is None or not m.ice.usernameFragment or m.dtls is None or not m.dtls.fingerprints:
            raise MediaError(
                "bad_sdp", "each media section needs ICE credentials and a DTLS fingerprint"
            )
    return description


def sending(description: aiortc_sdp.SessionDescription) -> dict[str, str]:
    """The media sections that send ({mid: kind}) in a checked offer."""
    return {
        m.rtp.muxId: m.kind
        for m in description.media
        if m.port != 0 and m.direction in ("sendrecv", "sendonly")
    }
