"""OpenAI-style errors: every refused request gets `{"error": {"message", "type", "param", "code"}}` and a
4xx status, so the official `openai` client raises its own typed exception with our message."""

from dataclasses import dataclass

# The `type` OpenAI gives each status.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


@dataclass
class RequestError(Exception):
    """A request the server refuses: `message` says what was expected and what came, `param` names the
    field (`messages[0].content[1].image_url.url`)."""

    message: str
    param: str | None = None
    status: int = 400
    code: str | None = None

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict:
        error_type = ERROR_TYPES.get(self.status, "invalid_request_error")
        return {
            "error": {"message": self.message, "type": error_type, "param": self.param, "code": self.code}
        }


__all__ = ["RequestError"]
