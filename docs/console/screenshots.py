"""Take the README's screenshots of the console, against a store holding real evolutions.

    python docs/console/screenshots.py [--out docs/console]

Runs two evolutions of ``examples/sample_project`` (``ctxstore evolve``) in a fresh local
store directory, serves ``ctxstore console`` on it, and saves PNGs of the main views, taken
by Debian's headless Chromium (``apt-get install chromium``) through Playwright.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.async_api import Page, async_playwright

ROOT = Path(__file__).resolve().parents[2]
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ctxstore(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "actors.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


async def shoot(page: Page, url: str, out: Path, *, full: bool = True, open: str = "") -> None:
    await page.goto(url)
    if await page.locator("#live").count():
        await page.wait_for_selector("#live.on")  # the live stream is up
    if open:
        await page.click(open)
    await page.screenshot(path=str(out), full_page=full)
    print(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out)


async def take(base: str, eid: str, seq: dict[tuple[str, str | None], int], out: Path) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 560})
        evo = f"{base}evolutions/{eid}"
        await shoot(page, base, out / "list.png")
        await page.set_viewport_size({"width": 1280, "height": 900})
        await shoot(page, evo, out / "timeline.png")
        await shoot(
            page,
            f"{evo}/context?at={seq[('stage', 'planning')]}",
            out / "context.png",
            open="#phase-external_research summary",
        )
        await shoot(page, f"{evo}/compare", out / "comparison.png")
        a, b = seq[("stage", "planning")], seq[("stage", "implementation")]
        await page.set_viewport_size({"width": 1280, "height": 600})
        await shoot(page, f"{evo}/diff?a={a}&b={b}", out / "diff.png")
        await page.set_viewport_size({"width": 1280, "height": 760})
        await page.goto(f"{base}query")
        await page.fill(
            "#query",
            '{\n  evolutions(targetContains: "sample_project", successRateAtLeast: 0.5) {\n'
            "    id status successRate\n    comparison { metrics { name delta } }\n  }\n}",
        )
        await page.get_by_role("button", name="Run").click()
        await page.wait_for_selector("#result:not(:empty)")
        await page.screenshot(path=str(out / "graphql.png"))
        print(out / "graphql.png")
        await browser.close()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    home = tempfile.mkdtemp(prefix="ctxstore-shots-")
    env = {**os.environ, "CTXSTORE_HOME": home, "CTXSTORE_SERVER_GRACE": "5"}
    env.pop("NATS_URL", None)
    target = str(ROOT / "examples" / "sample_project")
    ctxstore(env, "evolve", target, "--focus", "typing")
    ctxstore(env, "evolve", target, "--focus", "documentation", "complexity")
    listed = json.loads(ctxstore(env, "list", "--json"))
    eid = listed[-1]["evolution_id"]  # the newest
    history = json.loads(ctxstore(env, "history", eid, "--json"))
    seq = {(e["kind"], e.get("stage")): e["seq"] for e in history}

    console = subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "console", "--port", "0"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert console.stdout is not None
        base = console.stdout.readline().strip().split("=", 1)[1]
        asyncio.run(take(base, eid, seq, out))
    finally:
        console.send_signal(signal.SIGINT)
        console.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    main(parser.parse_args().out.resolve())
