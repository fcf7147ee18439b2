"""`python -m bench.render_speed [--seconds 30] [--size 1280x720] [--people 4]`: how fast a
recording is rendered again from its tracks (what a recovery after a crash and a re-render
after a short live programme do), as a multiple of real time.

It writes a recording of solid-colour cameras (1280x720, 30 fps) and tones through the real
capture path into a temporary directory, then runs `python -m recording.render` on it as the
server does, and prints the speed the render reports. Run it on a quiet machine."""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recording.renderer import read_progress
from server.recordings import RENDER_ARGS
from tests.recording_fixtures import Person, make_media, record

PEOPLE = (
    Person("p1", "Anna", (220, 30, 30), 440.0, "vp8", 0.0),
    Person("p2", "Boris", (30, 200, 40), 660.0, "h264", 0.0),
    Person("p3", "Vera", (40, 60, 220), 990.0, "vp8", 0.0),
    Person("p4", "Gleb", (235, 220, 40), 550.0, "vp8", 0.0),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.render_speed", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--size", default="1280x720", help="each camera's, WIDTHxHEIGHT")
    parser.add_argument("--people", type=int, default=4, choices=range(1, 5))
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary) / "recording"
        made = time.monotonic()
        medias = [
            make_media(p, seconds=args.seconds, width=width, height=height, fps=30)
            for p in PEOPLE[: args.people]
        ]
        record(directory, medias)
        made = time.monotonic() - made
        print(f"{args.people} tracks of {args.seconds:.0f} s made in {made:.0f} s")
        command = [sys.executable, "-m", "recording.render", str(directory), *RENDER_ARGS]
        begun = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - begun
        progress = read_progress(directory)
        if done.returncode != 0:
            print(done.stdout, done.stderr, file=sys.stderr)
            return 1
        duration = float(progress.get("duration", 0.0))
        print(
            f"render {' '.join(RENDER_ARGS)}: {duration:.1f} s of programme in {elapsed:.1f} s "
            f"(process included): {duration / elapsed:.1f}x real time"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
