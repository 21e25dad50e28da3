"""Chat messages: which content types they may hold, their media, and what a Q-Former reads from them."""


def check_content_types(conversation, content_types: tuple[str, ...]) -> None:
    """Refuse content parts the chat template would drop silently (`{"type": "smell"}`)."""
    conversations = [conversation] if conversation and isinstance(conversation[0], dict) else conversation
    for messages in conversations:
        for message in messages:
            content = message.get("content")
            for part in content if isinstance(content, list) else ():
                if part.get("type") not in content_types:
                    raise ValueError(
                        f"`conversation` content parts must have a `type` among {list(content_types)}, got "
                        f"{part.get('type')!r}."
                    )


def media_of(conversation: list[dict], content_type: str, keys: tuple[str, ...]) -> list:
    """The media of one content type in a conversation, in order: the values under `keys` of each of its
    parts (`{"type": "speech", "path": ...}`)."""
    items = []
    for message in conversation:
        content = message.get("content") or []
        if isinstance(content, str):
            continue
        for part in content:
            if part.get("type") == content_type:
                items.extend(part[key] for key in keys if key in part)
    return items


def without_content_types(message: dict, content_types: list[str]) -> dict:
    """A copy of `message` without its parts of `content_types`."""
    content = message.get("content")
    if not isinstance(content, list):
        return message
    return {**message, "content": [part for part in content if part.get("type") not in content_types]}


def conversation_instruction(conversation: list[dict]) -> str:
    """What the Q-Former reads: the text of the user turns (left truncation keeps the latest)."""
    texts = []
    for message in conversation:
        if message.get("role") != "user":
            continue
        content = message.get("content") or []
        if isinstance(content, str):
            texts.append(content)
        else:
            texts.extend(part["text"] for part in content if part.get("type") == "text")
    return " ".join(" ".join(texts).split())


__all__ = ["check_content_types", "conversation_instruction", "media_of", "without_content_types"]
