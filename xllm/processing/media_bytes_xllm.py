"""Media given as bytes: raw `bytes`, data URIs (`data:audio/wav;base64,...`) and bare base64 strings.

The OpenAI API carries media this way, and so may a Python user: every loader of the processor (images,
videos, sounds, speech, point clouds) asks here first whether an item is encoded bytes, so each modality
accepts the same forms. Strings that name an existing file stay paths, and http(s) URLs are left to the
loaders; anything else must decode as base64 (a missing path is reported as one).
"""

import base64
import binascii
import os
import urllib.parse

# Shorter strings are never taken for base64: a short name such as "abcd" is a missing file, not data.
MIN_BASE64_CHARACTERS = 16


def data_uri_contents(uri: str, name: str) -> tuple[str, bytes]:
    """(MIME type, bytes) of a `data:` URI; a ValueError names `name` when it does not decode."""
    header, comma, payload = uri.partition(",")
    if not comma:
        raise ValueError(f"`{name}` is a data URI without the ',' that starts its data: {uri[:80]!r}")
    mime, *parameters = header[len("data:") :].split(";")
    if "base64" in parameters:
        return mime or "text/plain", decode_base64(payload, name)
    return mime or "text/plain", urllib.parse.unquote_to_bytes(payload)


def decode_base64(text: str, name: str) -> bytes:
    """Strict base64 (whitespace allowed, nothing else outside the alphabet)."""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"`{name}` is not valid base64 ({error})") from error


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def encoded_media(item, name: str) -> tuple[bytes, str | None] | None:
    """(bytes, MIME type or None) of an item given as bytes, a data URI or base64; None for a path, a URL,
    an array or an already decoded object, which the caller loads its own way."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item), None
    if not isinstance(item, str):
        return None
    if item.startswith("data:"):
        mime, data = data_uri_contents(item, name)
        return data, mime
    if is_url(item) or os.path.exists(item):
        return None
    if len(item) >= MIN_BASE64_CHARACTERS:
        try:
            return decode_base64(item, name), None
        except ValueError:
            return None
    return None


def missing_source_error(item: str, name: str) -> FileNotFoundError:
    """What a string that is neither a file, a URL, a data URI nor base64 gets."""
    return FileNotFoundError(f"`{name}` names no file and is neither a data URI nor base64: {item[:200]!r}")


__all__ = ["data_uri_contents", "decode_base64", "encoded_media", "is_url", "missing_source_error"]
