"""Headless Chromium for the browser benchmarks (ui_image, ui_pointcloud, ui_audio): Debian's Chromium with the
flags of the browser tests (no GPU, WebGL on SwiftShader), a 1360×900 page at device scale 1, and the
annotator's way into the labeling tool (the login form, then the project's annotate page)."""
from __future__ import annotations

from pathlib import Path

from bench.stack import BenchError

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
TIMEOUT_MS = 120_000


def require_chromium() -> None:
    """BenchError unless Debian's Chromium is installed."""
    if not Path(CHROMIUM).exists():
        raise BenchError(f"no Chromium at {CHROMIUM}")


def launch(playwright):
    """A headless Chromium from a running ``sync_playwright()``."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def new_page(browser, *, timeout_ms: float = TIMEOUT_MS):
    """``(context, page)``: a fresh browser context (its own cookies) and its page."""
    context = browser.new_context(viewport={"width": 1360, "height": 900}, device_scale_factor=1)
    context.set_default_timeout(timeout_ms)
    return context, context.new_page()


def login(page, base: str, username: str = "annotator", password: str = "pw-annotator") -> None:
    """Sign in through the login form, as a person would."""
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def open_tool(browser, base: str, project: int, ready: str, *, polling: float = 50, errors: list | None = None):
    """``(context, page)`` with the annotator signed in on ``project``'s labeling tool once ``ready`` (a JS
    predicate) holds; ``errors`` collects the page's uncaught errors from the start."""
    context, page = new_page(browser)
    if errors is not None:
        page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, base)
    page.goto(f"{base}/projects/{project}/annotate/")
    page.wait_for_function(ready, timeout=TIMEOUT_MS, polling=polling)
    return context, page
