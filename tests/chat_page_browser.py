"""The chat page in a real headless browser: Debian's `chromium` and its `chromium-driver`, through Selenium.

Used by `tests/test_chat_page.py` and by `scripts/screenshot_chat_page.py`, which makes the README's
screenshot the same way.
"""

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

INSTALL_HINT = (
    "The browser test needs Debian's chromium and chromium-driver: `sudo apt-get install chromium "
    "chromium-driver` (`make test` installs them when it runs as root)."
)


def installed_browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths; a RuntimeError says how to install what is missing."""
    binary, driver_binary = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver_binary is None:
        missing = [
            name for name, path in (("chromium", binary), ("chromedriver", driver_binary)) if path is None
        ]
        raise RuntimeError(f"{' and '.join(missing)} not found. {INSTALL_HINT}")
    return binary, driver_binary


@contextlib.contextmanager
def headless_chromium() -> Iterator:
    """A Selenium driver for headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver_binary = installed_browser()
    options = Options()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_binary), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def chat_page_running(model, processor, **page_options) -> Iterator[str]:
    """The URL of the model's chat page, served on a free 127.0.0.1 port until exit."""
    from xllm.chat.web_page import build_chat_page

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    page = build_chat_page(model, processor, **page_options)
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        page.close()


def normalised(text: str) -> str:
    return " ".join(text.split())


def chat_in_browser(
    driver, url: str, turns: list[tuple[Path | None, str]], timeout: float = 120.0
) -> list[str]:
    """Send each (file or None, question) turn as a user would (attach, type, Enter) and return the answers
    the page shows once each is complete (the answer has stopped changing)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, timeout, poll_frequency=0.2)
    answers = []
    for turn, (attachment, question) in enumerate(turns):
        textbox = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "textarea"))
        if attachment is not None:
            driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(attachment))
            wait.until(
                lambda d: d.find_elements(By.CSS_SELECTOR, ".thumbnail-item, .thumbnails img, .file-preview")
            )
        textbox.send_keys(question)
        textbox.send_keys(Keys.ENTER)
        wait.until(lambda d, turn=turn: len(d.find_elements(By.CSS_SELECTOR, '[data-testid="bot"]')) > turn)
        answers.append(settled_answer(driver, turn, wait))
    return answers


def settled_answer(driver, turn: int, wait, quiet_seconds: float = 1.5) -> str:
    """The text of bot message `turn` once it has stopped changing for `quiet_seconds` (streaming is over)."""
    from selenium.webdriver.common.by import By

    seen = {"text": None, "since": 0.0}

    def settled(d) -> bool:
        text = normalised(d.find_elements(By.CSS_SELECTOR, '[data-testid="bot"]')[turn].text)
        now = time.monotonic()
        if text != seen["text"]:
            seen.update(text=text, since=now)
        return bool(text) and now - seen["since"] >= quiet_seconds

    wait.until(settled)
    return seen["text"]
