"""The programme as a fragmented MP4 that grows while the meeting runs, and the fast-start MP4
made from it at the end by remuxing (no re-encode): seconds, however long the meeting was."""

from pathlib import Path
from typing import Any

import av

# A fragment (moof + mdat) per keyframe, after a moov that holds no samples: every complete
# fragment is playable on its own terms, so a file cut anywhere plays up to its last fragment.
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


def open_fragmented(path: Path) -> Any:
    """An MP4 output container writing fragments; each one reaches the file as soon as it is
    complete (`flush_packets`), so a process killed with SIGKILL loses only the fragment it
    was filling."""
    return av.open(
        str(path), "w", format="mp4", options={"movflags": MOVFLAGS, "flush_packets": "1"}
    )


def fast_start(source: Path, target: Path) -> int:
    """Remux `source` (a fragmented MP4, possibly cut short by a crash: it is read up to its
    last whole fragment) into `target`, an MP4 with its index before the media, written to
    `target.part` and renamed when complete. Returns the number of packets copied."""
    partial = target.with_name(target.name + ".part")
    copied = 0
    try:
        with (
            av.open(str(source)) as given,
            av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"}) as out,
        ):
            wanted = [s for s in given.streams if s.type in ("video", "audio")]
            streams = {s.index: out.add_stream_from_template(s) for s in wanted}
            try:
                for packet in given.demux(wanted):
                    if packet.dts is None:  # the demuxer's empty packet at the end
                        continue
                    packet.stream = streams[packet.stream.index]
                    out.mux(packet)
                    copied += 1
            except av.FFmpegError:
                pass  # a torn last fragment: what was whole is the programme
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return copied
