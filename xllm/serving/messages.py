"""OpenAI chat messages -> the processor's conversation, every media part read and checked on the way.

Content parts (OpenAI's, then this server's extensions for what OpenAI has no type for):

| part | holds | becomes |
| --- | --- | --- |
| `text` | `{"text": str}` | text |
| `image_url` | `{"image_url": {"url": data URI or URL}}` | image |
| `input_audio` | `{"input_audio": {"data": base64, "format": "wav"}}`, optional `"modality"` | speech or audio |
| `video_url` | `{"video_url": {"url": ...}}` | video |
| `audio_url` (extension) | `{"audio_url": {"url": ...}}`, optional `"modality"` | speech or audio |
| `point_cloud_url` (extension) | `{"point_cloud_url": {"url": ..., "format": "npy"}}` | point cloud |

`"modality": "speech"` sends a clip to the speech interface (the C-Former) and `"audio"` to the sound
interface; without it, a clip goes to speech when the model has a speech interface and no audio one,
otherwise to audio (DESIGN.md section 3, as `XLLMProcessor.audio_goes_to_speech`). A point cloud's format
(`npy`, `ply`, `obj`, `off`, `stl`, `glb`, `gltf`) comes from `format`, its data URI's MIME type or its
first bytes. Roles: `system` (and OpenAI's newer `developer`, rendered as system), `user`, `assistant`.
"""

from xllm.processing.media_bytes_xllm import decode_base64

from .errors import RequestError
from .limits import ServingLimits
from .media import MediaAccess, check_image, check_video, decoded_clip

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# `input_audio.format`: OpenAI's two, then any container ffmpeg reads that clients commonly send.
AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg", "opus", "m4a", "aac", "webm")
AUDIO_MODALITIES = ("speech", "audio")
MEDIA_PART_TYPES = ("image_url", "input_audio", "audio_url", "video_url", "point_cloud_url")
PART_TYPES = ("text", *MEDIA_PART_TYPES)


class ConversationReader:
    """Reads the `messages` of one request for one model: `modalities` are its interfaces."""

    def __init__(
        self, modalities: list[str], audio_goes_to_speech: bool, access: MediaAccess, limits: ServingLimits
    ):
        self.modalities = list(modalities)
        self.default_audio_modality = "speech" if audio_goes_to_speech else "audio"
        self.access = access
        self.limits = limits

    def conversation(self, messages) -> list[dict]:
        """The processor's conversation; a RequestError names the first field that is wrong."""
        if not isinstance(messages, list) or not messages:
            raise RequestError("`messages` must be a non-empty list of chat messages.", "messages")
        conversation = [
            self._message(message, f"messages[{index}]") for index, message in enumerate(messages)
        ]
        media = sum(part["type"] != "text" for message in conversation for part in message["content"])
        if media > self.limits.max_media_items:
            raise RequestError(
                f"`messages` hold {media} media parts; the limit is {self.limits.max_media_items} "
                "(--max-media-items).",
                "messages",
            )
        if not any(message["role"] == "user" for message in conversation):
            raise RequestError("`messages` must hold at least one message with role 'user'.", "messages")
        return conversation

    def _message(self, message, param: str) -> dict:
        if not isinstance(message, dict):
            raise RequestError(
                f"`{param}` must be an object with `role` and `content`, got {message!r:.100}.", param
            )
        if "role" not in message:
            raise RequestError(f"`{param}` has no `role`; expected one of {list(ROLES)}.", f"{param}.role")
        role = message["role"]
        if role not in ROLES:
            raise RequestError(
                f"`{param}.role` is {role!r}; this server renders {list(ROLES)} (no tools).", f"{param}.role"
            )
        unknown = sorted(set(message) - {"role", "content", "name"})
        if unknown:
            raise RequestError(f"`{param}` has fields this server does not support: {unknown}.", param)
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise RequestError(
                f"`{param}.content` must be a string or a list of content parts, got {type(content).__name__}.",
                f"{param}.content",
            )
        parts = [self._part(part, f"{param}.content[{index}]") for index, part in enumerate(content)]
        if ROLES[role] != "user" and any(part["type"] != "text" for part in parts):
            raise RequestError(
                f"`{param}` is a {role} message with media; only user messages hold media.", param
            )
        return {"role": ROLES[role], "content": parts}

    def _part(self, part, param: str) -> dict:
        if not isinstance(part, dict) or "type" not in part:
            raise RequestError(f"`{param}` must be an object with a `type` among {list(PART_TYPES)}.", param)
        kind = part["type"]
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise RequestError(
                    f"`{param}.text` must be a string, got {type(text).__name__}.", f"{param}.text"
                )
            return {"type": "text", "text": text}
        if kind not in MEDIA_PART_TYPES:
            raise RequestError(
                f"`{param}.type` is {kind!r}; expected one of {list(PART_TYPES)}.", f"{param}.type"
            )
        holder = part.get(kind)
        if not isinstance(holder, dict):
            raise RequestError(f"`{param}.{kind}` must be an object.", f"{param}.{kind}")
        modality = self._modality(part, kind, param)
        if kind == "input_audio":
            return self._clip(holder, modality, f"{param}.input_audio")
        url_param = f"{param}.{kind}.url"
        data = self.access.read(holder.get("url"), url_param, self.limits)
        if modality == "image":
            check_image(data, url_param, self.limits)
            return {"type": "image", "image": data}
        if modality == "video":
            check_video(data, url_param, self.limits)
            return {"type": "video", "video": data}
        if modality == "point_cloud":
            cloud = {"bytes": data, "format": holder.get("format")}
            if cloud["format"] is not None and not isinstance(cloud["format"], str):
                raise RequestError(f"`{param}.{kind}.format` must be a string.", f"{param}.{kind}.format")
            return {"type": "point_cloud", "point_cloud": cloud}
        return {"type": modality, modality: decoded_clip(data, url_param, self.limits)}

    def _modality(self, part: dict, kind: str, param: str) -> str:
        """The interface a part goes to; refused when the model has none for it."""
        if kind in ("input_audio", "audio_url"):
            modality = part.get("modality", self.default_audio_modality)
            if modality not in AUDIO_MODALITIES:
                raise RequestError(
                    f"`{param}.modality` is {modality!r}; expected 'speech' (the speech interface) or 'audio' "
                    "(sounds).",
                    f"{param}.modality",
                )
        else:
            modality = {"image_url": "image", "video_url": "video", "point_cloud_url": "point_cloud"}[kind]
        if modality not in self.modalities:
            raise RequestError(
                f"`{param}` is {modality} input, but this model has no {modality} interface; it reads "
                f"{self.modalities}.",
                param,
                code="unsupported_modality",
            )
        return modality

    def _clip(self, holder: dict, modality: str, param: str) -> dict:
        audio_format = holder.get("format")
        if audio_format is not None and audio_format not in AUDIO_FORMATS:
            raise RequestError(
                f"`{param}.format` is {audio_format!r}; expected one of {list(AUDIO_FORMATS)}.",
                f"{param}.format",
            )
        encoded = holder.get("data")
        if not isinstance(encoded, str) or not encoded:
            raise RequestError(f"`{param}.data` must be a non-empty base64 string.", f"{param}.data")
        try:
            data = decode_base64(encoded, f"{param}.data")
        except ValueError as error:
            raise RequestError(str(error), f"{param}.data") from error
        return {"type": modality, modality: decoded_clip(data, f"{param}.data", self.limits)}


__all__ = ["AUDIO_FORMATS", "ConversationReader", "PART_TYPES", "ROLES"]
