"""End to end in a real browser: Debian's Chromium, driven by Playwright, against real gunicorn.

Sign in, browse, open the link dialog, watch the countdown, copy the curl command and run it,
see the link used, revoke, regenerate, and open a public link as a person would. The run also
refreshes the screenshots in docs/screenshots/ that the README shows (`make screenshots`).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import mint
from tests.helpers import browser_page, open_link_dialog, screenshots_dir, sign_in

SCREENSHOTS = screenshots_dir()
DUMP = os.urandom(300_000)
NAME = "db 2026's dump.sql.gz"  # a space and a quote: the command must quote it


@pytest.fixture(scope="module")
def server(live_server):
    (live_server.backups / "nightly").mkdir(parents=True, exist_ok=True)
    (live_server.backups / "nightly" / NAME).write_bytes(DUMP)
    (live_server.backups / "nightly" / "app-config.tar").write_bytes(b"config" * 5000)
    (live_server.backups / "weekly").mkdir(exist_ok=True)
    (live_server.backups / "README.txt").write_bytes(b"backups live below")
    return live_server


@pytest.fixture
def page(browser, server):
    page = browser_page(
        browser,
        server,
        permissions=["clipboard-read", "clipboard-write"],
        viewport={"width": 1100, "height": 760},
    )
    yield page
    page.context.close()
    assert page.problems == [], "\n".join(page.problems)  # no CSP violation, no script error


def create_link(page: Page, ttl_label: str = "5 minutes") -> str:
    page.get_by_label("Expires after").select_option(label=ttl_label)
    page.get_by_role("button", name="Create link").click()
    expect(page.locator("dialog .countdown")).to_be_visible()
    return page.locator("#link-url").input_value()


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, timeout=60)


def test_browse_copy_the_curl_command_and_fetch_the_file(page, server, tmp_path):
    sign_in(page, server)
    page.get_by_role("link", name="Local").click()
    page.get_by_role("link", name="nightly/").click()
    expect(page).to_have_url(re.compile(r"/browse/local\?path=nightly$"))  # hx-push-url
    expect(page.get_by_text(NAME)).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "explorer.png")

    page.go_back()
    expect(page.get_by_role("link", name="weekly/")).to_be_visible()
    page.go_forward()
    expect(page.get_by_text(NAME)).to_be_visible()

    open_link_dialog(page, NAME)
    create_link(page)
    countdown = page.locator("dialog .countdown")
    expect(countdown).to_have_text(re.compile(r"^0[45]:\d\d$"))
    first = countdown.inner_text()
    expect(countdown).not_to_have_text(first, timeout=3000)  # it ticks
    page.screenshot(path=SCREENSHOTS / "link-dialog.png")

    page.get_by_role("button", name="Copy curl").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    command = page.evaluate("navigator.clipboard.readText()")
    assert command == page.locator("#cmd-curl").inner_text()
    assert command.startswith("curl -fL -C - -o 'db 2026'\"'\"'s dump.sql.gz' 'http://127.0.0.1:")

    fetched = run(command, tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / NAME).read_bytes() == DUMP
    again = run(command, tmp_path)
    assert again.returncode == 22  # curl -f: the server said 410, the link is used up
    assert (tmp_path / NAME).read_bytes() == DUMP  # and the file is left as it was

    page.keyboard.press("Escape")
    page.get_by_role("link", name="Links").click()
    row = page.locator("tr.link-row").filter(has_text=NAME).first
    expect(row.locator(".badge:not(.mode)")).to_have_text("used")
    expect(row.locator("td.name > .badge.mode")).to_have_text("as stored")
    row.get_by_text("events").click()
    expect(row.get_by_text("completed").first).to_be_visible()
    expect(row.get_by_text("curl/").first).to_be_visible()
    expect(row.locator("li.completed time")).to_have_text(re.compile(r"\d\d:\d\d:\d\d$"))
    page.screenshot(path=SCREENSHOTS / "links.png", full_page=True)
    search = page.get_by_role("searchbox", name="Filter by file name")
    search.fill("no such file")
    expect(page.locator("tr.link-row")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/links\?q=no(%20|\+)such(%20|\+)file$"))
    search.fill("2026's")
    expect(page.locator("tr.link-row").filter(has_text=NAME)).to_have_count(1)
    expect(search).to_be_focused()  # the list changed under it, the box stayed


def test_regenerate_revoke_and_expiry(page, server):
    sign_in(page, server)
    page.goto("/browse/local?path=nightly")
    console = []  # every message, warnings included, from opening the dialog to copying
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    open_link_dialog(page, "app-config.tar")
    first_url = create_link(page)
    expect(page.get_by_text("Shown once: copy it now.")).to_be_visible()
    page.get_by_role("button", name="Copy link").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == first_url
    # Anything may leave a style attribute on the dialog (an extension, autofill); htmx used to
    # copy it onto the new content when settling, which the CSP refuses with a console error.
    page.locator("#link-box").evaluate("box => { box.style.outline = '1px solid transparent' }")
    page.get_by_role("button", name="Regenerate").click()
    expect(page.locator("#link-url")).not_to_have_value(first_url)
    expect(page.get_by_role("status").filter(has_text="was revoked: it no longer works")).to_be_visible()
    page.get_by_role("button", name="Copy curl").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert console == []
    second_url = page.locator("#link-url").input_value()
    assert subprocess.run(["curl", "-fsS", "-o", "/dev/null", first_url]).returncode == 22  # revoked

    # The server's expiresAt passing turns the dialog to its expired state, copy disabled.
    page.locator("#link-box").evaluate(
        "box => box.dataset.expiresAt = new Date(Date.now() - 1000).toISOString()"
    )
    expect(page.get_by_text("Expired: regenerate to get a new link.")).to_be_visible()
    expect(page.get_by_role("button", name="Copy curl")).to_be_disabled()
    page.keyboard.press("Escape")

    page.get_by_role("link", name="Links").click()
    rows = page.locator("tr.link-row").filter(has_text="app-config.tar")
    expect(rows.locator(".badge:not(.mode)")).to_have_text(["active", "revoked"])
    rows.first.get_by_role("button", name="Revoke").click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_contain_text("Revoke this link?")  # the page's own dialog, not confirm()
    confirm.get_by_role("button", name="Revoke").click()
    expect(rows.first.locator(".badge:not(.mode)")).to_have_text("revoked")
    assert subprocess.run(["curl", "-fsS", "-o", "/dev/null", second_url]).returncode == 22


def test_a_browser_opening_the_link_sees_the_landing_page(page, server, tmp_path):
    url = f"{server.url}/api/storage/public-download?token={mint(server.app, f'nightly/{NAME}', uses=2)}"
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(url)
    expect(page.get_by_role("heading", name=NAME)).to_be_visible()
    expect(page.locator(".countdown")).to_have_text(re.compile(r"^0[45]:\d\d$"))
    page.screenshot(path=SCREENSHOTS / "landing.png")
    page.get_by_role("button", name="Copy wget").click()
    command = page.evaluate("navigator.clipboard.readText()")
    assert command == f"wget -c --content-disposition '{url}'"  # the real link, not 'this link'
    fetched = run(command, tmp_path)  # the landing page used nothing
    assert fetched.returncode == 0 and (tmp_path / NAME).read_bytes() == DUMP
    page.evaluate("window.dispatchEvent(new Event('focus'))")  # back to the tab: it re-reads the link
    expect(page.get_by_text("works for one download")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download").click()
    assert Path(download.value.path()).read_bytes() == DUMP
    expect(page.get_by_text("This link is used up")).to_be_visible()  # no reload, no focus needed
    expect(page.get_by_role("button", name="Download")).to_have_count(0)
    assert run(f"curl -fsS -o /dev/null '{url}'", tmp_path).returncode == 22  # both uses spent


def test_a_dead_link_in_a_browser_has_a_human_heading(page, server):
    page.goto(f"{server.url}/api/storage/public-download?token=made-up")
    expect(page.get_by_role("heading", name="This link no longer works")).to_be_visible()
    # Chromium logs the 410 of the page itself; no other message is allowed.
    page.problems[:] = [problem for problem in page.problems if "status of 410" not in problem]


def test_countdown_is_right_on_a_machine_whose_clock_is_wrong(page, server):
    """The browser's clock runs an hour behind: the countdown still follows the server's."""
    page.clock.install(time=time.time() - 3600)
    url = f"{server.url}/api/storage/public-download?token={mint(server.app, 'README.txt', ttl=300)}"
    page.goto(url)
    expect(page.locator(".countdown")).to_have_text(re.compile(r"^0[45]:\d\d$"))


def test_short_link_expires_on_the_landing_page(page, server):
    url = f"{server.url}/api/storage/public-download?token={mint(server.app, 'README.txt', ttl=2)}"
    page.goto(url)
    expect(page.get_by_text("This link has expired.")).to_be_visible(timeout=5000)


def test_phone_width_explorer(browser, server):
    page = browser_page(browser, server, viewport={"width": 390, "height": 760})
    sign_in(page, server, "viewer")
    page.goto("/browse/local?path=nightly")
    expect(page.get_by_text(NAME)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    page.screenshot(path=SCREENSHOTS / "explorer-phone.png")
    page.context.close()
    assert page.problems == []


def test_admin_adds_and_tests_a_storage(page, server, tmp_path):
    sign_in(page, server, "admin")
    page.get_by_role("link", name="Admin").click()
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Storages").click()
    row = page.locator("tr").filter(has=page.locator("code", has_text="local"))
    row.get_by_role("button", name="Test connection").click()
    expect(row.locator(".check.ok")).to_contain_text("is readable.")

    local = page.locator("form.storage-form").filter(has=page.locator('input[value="local"]'))
    local.get_by_label(re.compile("^Id")).fill("Bad Id")
    local.get_by_label("Name").fill("Archive")
    local.get_by_label("Folder on this server").fill(str(tmp_path / "archive"))
    local.get_by_role("button", name="Add local storage").click()
    expect(page.get_by_role("alert")).to_contain_text("A storage id is lower-case letters")
    expect(local.get_by_label("Name")).to_have_value("Archive")  # swapped in place, nothing lost
    # The refused form is a 400 by design, which Chromium and htmx log as console errors.
    page.problems[:] = [problem for problem in page.problems if "400" not in problem]
    local.get_by_label(re.compile("^Id")).fill("archive")
    local.get_by_role("button", name="Add local storage").click()
    expect(page.get_by_text("Storage archive added.")).to_be_visible()
    row = page.locator("tr").filter(has=page.locator("code", has_text="archive"))
    row.get_by_role("button", name="Test connection").click()
    expect(row.locator(".check.ok")).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "admin-storages.png", full_page=True)


def test_a_big_folder_pages_by_size_and_back(page, server):
    """Sort by size, go to the next page and back: htmx swaps the listing and the address follows."""
    many = server.backups / "many"
    many.mkdir(exist_ok=True)
    for number in range(150):
        (many / f"part-{number:03d}.bin").write_bytes(b"x" * number)
    sign_in(page, server, "viewer")
    page.goto("/browse/local?path=many")
    page.get_by_role("link", name="Sort by Size").click()
    expect(page).to_have_url(re.compile(r"sort=size$"))  # swapped: the next click is on the new link
    page.get_by_role("link", name="Sort by Size").click()  # again: largest first
    expect(page).to_have_url(re.compile(r"sort=size&order=desc$"))
    above, below = (page.get_by_role("navigation", name=f"Pages ({where})") for where in ("above", "below"))
    expect(above).to_contain_text("150 entries · page 1 of 2")
    expect(page.locator("tbody tr").nth(1)).to_contain_text("part-149.bin")  # after the parent row
    below.get_by_role("link", name="Next →").click()
    expect(above).to_contain_text("page 2 of 2")
    expect(page).to_have_url(re.compile(r"path=many&sort=size&order=desc&page=2$"))
    expect(page.locator("tbody tr").nth(1)).to_contain_text("part-049.bin")
    page.go_back()
    expect(above).to_contain_text("page 1 of 2")
    below.get_by_label("Go to page (below)").fill("2")
    below.get_by_role("button", name="Go").click()
    expect(below).to_contain_text("page 2 of 2")
    expect(page.locator(".htmx-request, .htmx-swapping, .htmx-settling")).to_have_count(0)  # swapped for good
    above.get_by_label("Rows per page (above)").select_option("250")
    expect(page).to_have_url(re.compile(r"size=250"))
    expect(page.locator("tbody tr")).to_have_count(151)
    expect(below).to_contain_text("150 entries")
    expect(below).not_to_contain_text("page 1 of")
    expect(above).to_have_count(0)  # one page: the pager above would only repeat the one below
    page.get_by_role("link", name="Sort by Name").click()
    expect(page).not_to_have_url(re.compile(r"sort=size"))  # swapped before the filter is typed
    (many / "deeper").mkdir()
    (many / "deeper" / "part-found-below.bin").write_bytes(b"x")
    page.get_by_label("Filter by name").fill("found")
    expect(page.locator(".empty")).to_contain_text("No name contains")
    page.get_by_label("in subfolders too").check()
    expect(page.locator("tbody")).to_contain_text("deeper/part-found-below.bin")
    expect(page.get_by_role("status")).to_contain_text("1 match")
