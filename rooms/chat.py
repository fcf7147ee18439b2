"""The room's chat: the recent messages every newcomer sees, and what a message may hold."""

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rooms.errors import Invalid
from rooms.meeting import iso

HISTORY = 50

# Control characters other than tab and newline only ever garble a chat line.
_DROP = {c: None for c in range(32) if c not in (9, 10)} | {127: None}


@dataclass(frozen=True)
class ChatMessage:
    id: str
    sender: str  # participant (seat) id
    name: str
    text: str
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.sender,
            "name": self.name,
            "text": self.text,
            "at": iso(self.at),
        }


class ChatLog:
    """The last `keep` messages, oldest first, with ids that never repeat in one room."""

    def __init__(self, keep: int = HISTORY) -> None:
        self._messages: deque[ChatMessage] = deque(maxlen=keep)
        self._count = 0

    def post(self, sender: str, name: str, text: str, at: datetime) -> ChatMessage:
        self._count += 1
        message = ChatMessage(id=f"m{self._count}", sender=sender, name=name, text=text, at=at)
        self._messages.append(message)
        return message

    def recent(self) -> list[ChatMessage]:
        return list(self._messages)


def chat_text(value: object, limit: int) -> str:
    """The text of a message as it will be shown, or Invalid."""
    if not isinstance(value, str):
        raise Invalid("text must be a string")
    text = value.translate(_DROP).strip()
    if not text:
        raise Invalid("text must not be empty")
    if len(text) > limit:
        raise Invalid(f"text is longer than {limit} characters")
    return text
