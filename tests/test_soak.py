"""The load tool's soak, 60 s of it (issue 11, item 3): a real `veche serve` on loopback lives
through joins and leaves, share toggles, chat, WHEP viewers coming and going and a recording
started and stopped; its RSS, open files and asyncio tasks come back to their baseline."""

import secrets

from bench import clip, servers
from bench.soak import FILES_MARGIN, RSS_MARGIN, TASKS_MARGIN, soak
from bench.veche import VecheTarget

SECONDS = 60.0
INTERVAL = 10.0


async def test_a_minute_of_a_meetings_life_leaves_the_server_as_it_found_it() -> None:
    media = clip.load(clip.ClipSpec(seconds=4.0))
    key = secrets.token_urlsafe(24)
    lines: list[str] = []
    async with servers.veche(None, key) as started:
        target = VecheTarget(started.url, key)
        try:
            await target.create_meeting()
            result = await soak(target, started.pid, media, SECONDS, INTERVAL, lines.append)
        finally:
            await target.close()
    report = "\n".join(lines)
    print(report)
    counts = result.counts
    assert counts.errors == [], report
    assert counts.joins >= 10 and counts.share_toggles == 2 * counts.joins, report
    assert counts.chats == counts.joins, report
    assert counts.whep_viewers >= 5 and counts.whep_packets > 0, report
    assert counts.recordings == 1, report
    assert len(result.samples) >= SECONDS // INTERVAL - 1, report
    # The meeting was busy: more tasks than when it was quiet ...
    assert max(s.tasks for s in result.samples) > result.baseline.tasks, report
    # ... and quiet again, the server is back where it was.
    b, q = result.baseline, result.quiet
    assert q.rss_kb <= b.rss_kb * (1 + RSS_MARGIN), report
    assert q.open_files <= b.open_files + FILES_MARGIN, report
    assert q.tasks <= b.tasks + TASKS_MARGIN, report
