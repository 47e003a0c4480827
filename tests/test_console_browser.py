"""The console in a real browser: Debian's Chromium, headless, driven by Playwright (which
downloads no browser of its own), against a console served over a real store.

Chromium must be installed (``apt-get install chromium``; CI's ``.ci/run`` does it): without
it this test fails, unless ``CTXSTORE_NO_BROWSER=1`` says this machine cannot have one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest
from consolekit import record_evolution, reject_write, served_console
from nats.aio.client import Client
from playwright.async_api import Browser, Page, async_playwright, expect

from actors import SharedContextStore
from actors.console import Console
from contracts import Stage

__all__ = ["served_console"]  # the fixture, imported for pytest

CHROMIUM_FLAGS: Final = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # No calls home: this machine's network is closed, and refused connections are noise.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS: Final = 10_000
expect.set_options(timeout=WAIT_MS)


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if found is None:
        if os.environ.get("CTXSTORE_NO_BROWSER") == "1":
            pytest.skip("CTXSTORE_NO_BROWSER=1: no Chromium on this machine")
        pytest.fail(
            "Chromium is not installed (apt-get install chromium), and the console's browser "
            "test needs it; set CTXSTORE_NO_BROWSER=1 to skip it on a machine that cannot have it"
        )
    return found


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    async with async_playwright() as playwright:
        # Playwright gives each launch a new empty profile directory of its own.
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    await context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


async def test_console_in_chromium_list_click_live_writes_and_views(
    served_console: tuple[Console, str], page: Page, store: SharedContextStore, nc: Client
) -> None:
    _, url = served_console
    rec = await record_evolution(store, nc, "/src/alpha", success_rate=0.3, complete=False)
    other = await record_evolution(store, nc, "/src/beta", success_rate=0.9)
    history = await store.history(rec.evolution_id)

    # The list: both evolutions, newest first, with what the store holds.
    await page.goto(url)
    rows = page.locator("#rows tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_have_attribute("id", f"row-{other.evolution_id}")
    await expect(rows.nth(0).locator(".badge")).to_have_text("completed")
    await expect(rows.nth(0).locator(".rate")).to_have_text("90.0%")
    await expect(rows.nth(1).locator(".badge")).to_have_text("running")
    await expect(page.locator("#live")).to_have_text("live")

    # Live on the list: a new evolution appears on top without a reload.
    new = await store.create_context("/src/gamma")
    await expect(rows).to_have_count(3)
    await expect(rows.nth(0)).to_have_attribute("id", f"row-{new}")

    # Filtering by status, from the form.
    await page.select_option("select[name=status]", "completed")
    await expect(rows).to_have_count(1)
    await expect(rows.nth(0)).to_have_attribute("id", f"row-{other.evolution_id}")
    await page.goto(url)

    # Into one evolution: its timeline, every write, the rejected one with its reason.
    await page.click(f"text={rec.evolution_id}")
    await expect(page).to_have_url(f"{url}evolutions/{rec.evolution_id}")
    timeline = page.locator("#timeline tr")
    await expect(timeline).to_have_count(len(history))
    rejected = page.locator(f"#w{rec.rejected_seq}")
    await expect(rejected).to_have_class("rejected")
    await expect(rejected.locator(".reason")).to_contain_text("files_analyzed")
    await expect(page.locator("#live")).to_have_text("live")

    # A live write appears, and the header follows it.
    receipt = await store.context(rec.evolution_id).update_phase(Stage.IMPLEMENTATION)
    row = page.locator(f"#w{receipt.seq}")
    await expect(row).to_be_visible()
    await expect(row.locator(".kind")).to_have_text("stage → implementation")
    await expect(row.locator(".outcome")).to_have_text("applied")
    await expect(page.locator('[data-field="phase"]')).to_have_text("implementation")
    await expect(page.locator('[data-field="version"]')).to_have_text(str(receipt.seq))
    await expect(timeline).to_have_count(len(history) + 1)
    # And a live rejection, with why.
    seq = await reject_write(nc, rec.evolution_id)
    await expect(page.locator(f"#w{seq} .reason")).to_contain_text("files_analyzed")
    await expect(page.locator("#rejected-count")).to_have_text("2")

    # The context at a past version, from the row's link.
    planning = next(e for e in history if e.stage == Stage.PLANNING)
    await page.click(f"#w{planning.seq} >> text=context")
    await expect(page.locator("p.past")).to_contain_text(f"version {planning.seq}")
    await expect(page.locator("p.past")).to_contain_text("phase planning")
    await expect(page.locator("#phase-improvement_plan summary")).to_contain_text("not written")
    # ...and another version from the picker.
    await page.select_option("select[name=at]", str(receipt.seq))
    await expect(page.locator("p.past")).to_contain_text("phase implementation")

    # The comparison of the finished one, with its metrics delta.
    await page.goto(f"{url}evolutions/{other.evolution_id}")
    await page.click("nav.tabs >> text=Comparison")
    await expect(page.locator("#side-after")).to_contain_text("90.0%")
    delta = page.locator("#metrics tr", has_text="docstring_coverage").locator(".delta")
    await expect(delta).to_have_text("+0.5")

    # A diff between two versions, picked in the form.
    await page.click("nav.tabs >> text=Diff")
    versions = [e.seq for e in await store.history(other.evolution_id) if e.applied]
    await page.select_option("select[name=a]", str(versions[1]))
    await page.select_option("select[name=b]", str(versions[4]))
    await expect(page.locator("#diff-summary")).to_contain_text(
        f"Version {versions[1]} → {versions[4]}"
    )
    expected = await store.diff(other.evolution_id, versions[1], versions[4])
    await expect(page.locator("#changes tbody tr")).to_have_count(len(expected.changes))

    # The GraphQL page runs a query across evolutions, from the browser.
    await page.click("header >> text=GraphQL")
    await expect(page.locator("#query")).to_contain_text("successRateBelow: 0.5")
    await page.fill("#query", "{ evolutions(successRateAtLeast: 0.5) { id successRate } }")
    await page.get_by_role("button", name="Run").click()
    await expect(page.locator("#result")).to_contain_text(f'"id": "{other.evolution_id}"')
    await expect(page.locator("#result")).not_to_contain_text(rec.evolution_id)
    await expect(page.locator("#took")).to_contain_text("200 in")
