"""Browser tests: Debian's Chromium driven through Playwright's sync API against pytest-django's live_server."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = os.environ.get("LOOPLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


@pytest.fixture(scope="session", autouse=True)
def _close_live_server_keepalive_connections(django_db_setup, django_db_blocker):
    """The live server answers each browser keep-alive connection in its own thread, and such a thread
    keeps its database connection until the browser's socket closes, which can be after the test.
    Close those leftover sessions before pytest-django drops the test database (else: "being accessed
    by other users" and a test database left behind)."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def chromium(monkeypatch):
    """One Chromium per test. Playwright's sync API runs an event loop in this thread while it lives, and the
    ORM calls the test makes are sync: Django's async-safety check is lifted for this test only (never
    process-wide, where it would leak into subprocesses such as `manage.py check --deploy`)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set LOOPLAB_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(chromium, request, artifacts):
    """new_page() -> a page in a fresh browser context (its own cookies); failed tests leave a screenshot."""
    contexts = []

    def make():
        context = chromium.new_context(viewport={"width": 1360, "height": 900}, device_scale_factor=1)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    errors: list[str] = []
    make.errors = errors
    yield make
    for i, context in enumerate(contexts):
        for j, page in enumerate(context.pages):
            node = getattr(request.node, "rep_call", None)
            if node is not None and node.failed:
                page.screenshot(path=str(artifacts / f"FAILED-{request.node.name}-{i}-{j}.png"), full_page=True)
        context.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture
def people(transactional_db):
    """A lead and an annotator (password pw-<name>) in a database the live server's threads can see."""
    from apps.accounts.services import user_create

    return {"lead": user_create(username="lead", password="pw-lead", role="lead"),
            "annotator": user_create(username="annotator", password="pw-annotator", role="annotator")}


def login(page, live_server, username: str, password: str) -> None:
    """Sign in through the login form, as a person would."""
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def open_as(new_page, live_server, username: str, path: str, ready: str | None = None, **wait):
    """A fresh page (from the ``new_page`` fixture) signed in as ``username``, whose password is pw-<username> as
    the ``people`` fixture makes them, on ``path``; then, when given, until the JS predicate ``ready`` holds
    (``wait``: Playwright's wait_for_function options, e.g. ``timeout``)."""
    page = new_page()
    login(page, live_server, username, f"pw-{username}")
    page.goto(f"{live_server.url}{path}")
    if ready is not None:
        page.wait_for_function(ready, **wait)
    return page


@pytest.fixture
def background_jobs(monkeypatch, transactional_db):
    """Run selected Celery tasks in a background thread instead of eagerly inside the request,
    as a worker would: the request returns at once and the page has a running job to follow."""
    from django.db import connection

    threads: list[threading.Thread] = []

    def patch(task):
        def delay(*args, **kwargs):
            def target():
                try:
                    task(*args, **kwargs)  # runs the task body here; its follow-up tasks run eagerly in this thread
                finally:
                    connection.close()

            thread = threading.Thread(target=target, daemon=True, name=f"job-{task.name}")
            threads.append(thread)
            thread.start()

        monkeypatch.setattr(task, "delay", delay)

    yield patch
    for thread in threads:
        thread.join(timeout=300)
