"""`python -m recording.render DIR [--size WxH] [--fps N]`: render a recording's programme in
this process, progress in DIR/render.json; exit status 1 on failure (reason in render.json)."""

import argparse
import sys
from pathlib import Path

from recording import lifeline
from recording.renderer import render_with_progress, write_progress

LOCK_WAIT = 10.0  # seconds to wait for a recording process still closing the directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recording.render", description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--size", default="1280x720", help="canvas, WIDTHxHEIGHT")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--preset", default="fast", help="libx264 preset")
    parser.add_argument("--font", type=Path, help="a TrueType font for the names")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"bad --size {args.size!r}")
    if not args.directory.is_dir():
        print(f"no such recording directory: {args.directory}", file=sys.stderr)
        return 1
    lifeline.die_with_parent()  # a new server renders this recording again
    try:
        with lifeline.holding(args.directory, wait=LOCK_WAIT):
            result = render_with_progress(
                args.directory,
                width=width,
                height=height,
                fps=args.fps,
                preset=args.preset,
                font=args.font,
            )
    except lifeline.Busy as busy:
        write_progress(args.directory, state="failed", percent=0, error=str(busy), code="busy")
        result = None
    if result is None:
        print((args.directory / "render.json").read_text(encoding="utf-8"), file=sys.stderr)
        return 1
    print(
        f"{result.output}: {result.duration:.1f} s in {result.elapsed:.1f} s "
        f"({result.speed:.1f}x), peak memory {result.peak_memory_kb} KiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
