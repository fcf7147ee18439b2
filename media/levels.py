"""Who is speaking, from the RFC 6464 audio levels publishers put in their RTP headers.

Nothing is decoded: each publisher's mean level per interval (-dBov, 0 loudest, 127 silence)
is smoothed, and a hysteresis between two thresholds decides who speaks.
"""

from typing import Any

SPEAK_AT = 55  # a smoothed level at or below this (louder) starts speaking ...
QUIET_AT = 65  # ... and at or above this (quieter) stops it
SMOOTHING = 0.5  # weight of the newest interval
SILENCE = 127


class ActiveSpeakers:
    """Speaking publishers and the active (most recent dominant) one, keyed by the caller's
    names. `update` once per interval; it says whether anything visible changed."""

    def __init__(self, speak_at: int = SPEAK_AT, quiet_at: int = QUIET_AT) -> None:
        self._speak_at = speak_at
        self._quiet_at = quiet_at
        self._smoothed: dict[str, float] = {}
        self.speaking: list[str] = []
        self.active: str | None = None

    def update(self, levels: dict[str, int | None]) -> bool:
        """Take each name's level for the last interval (None: nothing heard)."""
        for name in list(self._smoothed):
            if name not in levels:
                self.forget(name)
        speaking = []
        for name, level in levels.items():
            heard = SILENCE if level is None else min(max(level, 0), SILENCE)
            smoothed = self._smoothed.get(name, float(SILENCE))
            smoothed += SMOOTHING * (heard - smoothed)
            self._smoothed[name] = smoothed
            was = name in self.speaking
            if smoothed <= self._speak_at or (was and smoothed < self._quiet_at):
                speaking.append(name)
        active = self.active
        if speaking and active not in speaking:
            # The active speaker stays while they speak; else the loudest who speaks takes over.
            active = min(speaking, key=lambda n: self._smoothed[n])
        changed = sorted(speaking) != sorted(self.speaking) or active != self.active
        self.speaking = speaking
        self.active = active
        return changed

    def forget(self, name: str) -> None:
        self._smoothed.pop(name, None)
        if name in self.speaking:
            self.speaking.remove(name)
        if self.active == name:
            self.active = None

    def as_dict(self) -> dict[str, Any]:
        return {"active": self.active, "speaking": sorted(self.speaking)}
