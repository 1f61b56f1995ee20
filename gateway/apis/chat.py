"""Chat completions (`POST /v1/chat/completions`): the shape the memory layer reads natively."""

from __future__ import annotations

from typing import Any

from gateway.apis.base import Api, latest_index
from gateway.exchange import Reply
from gateway.memory.fitting import ChatTrimming
from gateway.memory.inject import SEPARATOR, appends_to_text, with_text
from gateway.memory.overflow import Trimming
from gateway.replies import SseCapture, StreamCapture, reply_from_json


def is_user_message(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") == "user"


class ChatApi(Api):
    name = "chat"

    def view(self, payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    def trimming(self, payload: dict[str, Any]) -> Trimming | None:
        return ChatTrimming(payload)

    def appends(self, payload: dict[str, Any], placement: str) -> bool:
        return not (placement == "tail" and self._tail_index(payload) is not None) and appends_to_text(payload)

    def insert(self, payload: dict[str, Any], block: str, placement: str) -> dict[str, Any] | None:
        index = self._tail_index(payload) if placement == "tail" else None
        if index is None:
            return with_text(payload, block)
        messages = payload["messages"]
        # A system message of its own right before the latest user turn: every byte before it stays as it was.
        tail = {"role": "system", "content": block.removeprefix(SEPARATOR)}
        return {**payload, "messages": [*messages[:index], tail, *messages[index:]]}

    @staticmethod
    def _tail_index(payload: dict[str, Any]) -> int | None:
        messages = payload.get("messages")
        return latest_index(messages, is_user_message) if isinstance(messages, list) else None

    def reply_from_json(self, raw: bytes, content_encoding: str) -> Reply | None:
        return reply_from_json(raw, content_encoding)

    def stream_capture(self) -> SseCapture:
        return StreamCapture()
