"""Write the README's screenshot of the chat page (`docs/chat-page.png`), the way its browser test drives it.

    python scripts/screenshot_chat_page.py [OUTPUT.png]

The tiny random-weight test model answers, so the words are noise: the picture shows the page.
"""

import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "tests"))

from chat_page_browser import chat_in_browser, chat_page_running, headless_chromium  # noqa: E402
from media_files import png_bytes  # noqa: E402

from xllm.testing import tiny_model_and_processor  # noqa: E402


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else REPOSITORY / "docs" / "chat-page.png"
    with tempfile.TemporaryDirectory() as folder:
        picture = Path(folder) / "red.png"
        picture.write_bytes(png_bytes("red", size=64))
        with (
            headless_chromium() as driver,
            chat_page_running(*tiny_model_and_processor(), max_new_tokens=10) as url,
        ):
            chat_in_browser(driver, url, [(picture, "what colour is it ?"), (None, "which shape is it ?")])
            driver.save_screenshot(str(output))
    print(f"Wrote {output}")


if __name__ == "__main__":
    main()
