"""Chat messages: which content types they may hold, their media, and what a Q-Former reads from them."""

# The roles the chat template renders; any other would be dropped from the prompt without a word.
ROLES = ("system", "user", "assistant")


def check_conversation(conversation, content_types: tuple[str, ...]) -> None:
    """Refuse what the chat template would drop silently: a message without a role or with a role it does
    not render (`"tool"`), and content parts of an unknown type (`{"type": "smell"}`)."""
    conversations = [conversation] if conversation and isinstance(conversation[0], dict) else conversation
    for index, messages in enumerate(conversations):
        where = f"conversation[{index}]" if len(conversations) > 1 else "conversation"
        for position, message in enumerate(messages):
            if not isinstance(message, dict) or "role" not in message:
                raise ValueError(
                    f"`{where}[{position}]` must be a message dict with a `role` among {list(ROLES)}, got "
                    f"{message if not isinstance(message, dict) else sorted(message)!r}."
                )
            if message["role"] not in ROLES:
                raise ValueError(
                    f"`{where}[{position}]` has role {message['role']!r}; the chat template renders only "
                    f"{list(ROLES)}."
                )
            content = message.get("content")
            for part in content if isinstance(content, list) else ():
                if not isinstance(part, dict) or part.get("type") not in content_types:
                    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                    raise ValueError(
                        f"`conversation` content parts must have a `type` among {list(content_types)}, got "
                        f"{kind!r}."
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


__all__ = ["ROLES", "check_conversation", "conversation_instruction", "media_of", "without_content_types"]
