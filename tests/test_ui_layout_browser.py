"""Every page in Chromium at phone width (390 px) and on a wide screen (1280 px), light and dark:
nothing scrolls sideways, the console stays empty (no CSP violation, no script error), dialogs fit
and give the focus back to what opened them, and a storage is removed through the page's own
confirmation dialog. Phone-width and dark-theme screenshots for the README come from here too.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import add_s3, free_port
from tests.helpers import browser_page, open_link_dialog, screenshots_dir, sign_in

LONG_NAME = "mydb-production-eu-central-2026-11-25T04-30-00Z.sql.gz"  # no space to break at
SIZES = {"phone": {"width": 390, "height": 800}, "wide": {"width": 1280, "height": 800}}
SCREENSHOTS = {("phone", "light"): "links-phone.png", ("wide", "dark"): "link-dialog-dark.png"}


@pytest.fixture(scope="module")
def server(live_server):
    nightly = live_server.backups / "nightly"
    nightly.mkdir(parents=True, exist_ok=True)
    (nightly / LONG_NAME).write_bytes(b"dump" * 1000)
    (nightly / "app config (old).tar").write_bytes(b"config")
    (live_server.backups / "weekly").mkdir(exist_ok=True)
    for number in range(120):  # enough for a full pager: first, previous, the jump, next, last
        (live_server.backups / "weekly" / f"weekly-{number:03d}.sql.gz").write_bytes(b"w")
    add_s3(live_server.app, "offsite", f"http://127.0.0.1:{free_port()}", "backups")  # does not answer
    for uses in (1, 3):
        live_server.link(f"nightly/{LONG_NAME}", uses=uses)
    return live_server


@pytest.fixture(params=[(size, scheme) for size in SIZES for scheme in ("light", "dark")], ids="-".join)
def page(request, browser, server):
    size, scheme = request.param
    page = browser_page(browser, server, viewport=SIZES[size], color_scheme=scheme)
    page.look = request.param
    yield page
    page.context.close()


def assert_holds(page: Page, expected_status: int | None = None) -> None:
    """Nothing wider than the window, and nothing in the console but the failed load of an error
    page itself (Chromium logs any answer of 400 or more)."""
    overflow = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert overflow[0] <= overflow[1], f"{page.url} scrolls sideways at {page.look}: {overflow}"
    expected = f"the server responded with a status of {expected_status}"
    problems = [problem for problem in page.problems if not (expected_status and expected in problem)]
    assert problems == [], "\n".join(problems)
    page.problems.clear()


def visit(page: Page, path: str, status: int | None = None) -> None:
    page.goto(path)
    assert_holds(page, status)


def test_every_page_holds(page, server):
    visit(page, "/login")
    visit(page, server.link("nightly/app config (old).tar"))  # the landing page, as a browser sees it
    expect(page.get_by_role("button", name="Download")).to_be_visible()
    sign_in(page, server, "admin")
    assert_holds(page)
    dark = page.evaluate("getComputedStyle(document.documentElement).backgroundColor") != "rgb(244, 245, 247)"
    assert dark == (page.look[1] == "dark")
    for path in ("/", "/browse/local", "/admin/users", "/admin/keys", "/admin/profiles", "/admin/storages"):
        visit(page, path)
    visit(page, "/browse/local?path=weekly&size=50&page=2")
    expect(page.get_by_role("link", name="Last »").first).to_be_visible()
    visit(page, "/browse/local?path=weekly&q=weekly-11&below=1")
    visit(page, "/admin/storages/local")
    visit(page, "/browse/nope", 404)
    visit(page, "/browse/offsite", 503)
    expect(page.get_by_role("heading", name="Storage unavailable")).to_be_visible()
    expect(page.get_by_text("The storage offsite did not answer")).to_be_visible()

    visit(page, "/links")
    row = page.locator("tr.link-row").first
    for cell in row.locator("td").all():  # every column stays on screen, Expires included
        expect(cell).to_be_visible()
    name, table = row.locator("td.name").bounding_box(), page.locator("table.links").bounding_box()
    assert name["width"] >= 0.4 * table["width"]  # the file column stays readable
    if page.look in SCREENSHOTS and page.look[0] == "phone":
        page.screenshot(path=screenshots_dir() / SCREENSHOTS[page.look], full_page=True)


def test_the_header_keeps_sign_out_on_its_first_row(page, server):
    sign_in(page, server, "admin")
    brand = page.locator(".bar .brand").bounding_box()
    sign_out = page.get_by_role("button", name="Sign out").bounding_box()
    assert abs(sign_out["y"] + sign_out["height"] / 2 - (brand["y"] + brand["height"] / 2)) < 8
    assert sign_out["height"] < 48  # one line: "Sign out" does not wrap either


def test_the_link_dialog_fits_and_gives_the_focus_back(page, server):
    sign_in(page, server, "operator")
    page.goto("/browse/local?path=nightly")
    open_link_dialog(page, LONG_NAME)
    assert_fits(page, page.locator("dialog[open]"))
    page.keyboard.press("Escape")
    expect(page.locator("dialog[open]")).to_have_count(0)
    expect(page.get_by_label(f"Actions for {LONG_NAME}")).to_be_focused()

    open_link_dialog(page, LONG_NAME)
    page.get_by_role("button", name="Create link").click()
    expect(page.locator("dialog .countdown")).to_be_visible()
    assert_fits(page, page.locator("dialog[open]"))
    assert_holds(page)
    if page.look in SCREENSHOTS and page.look[0] == "wide":
        page.screenshot(path=screenshots_dir() / SCREENSHOTS[page.look])
    page.get_by_role("button", name="Close").click()  # the dialog's own button gives it back too
    expect(page.get_by_label(f"Actions for {LONG_NAME}")).to_be_focused()
    assert_holds(page)


def assert_fits(page: Page, element) -> None:
    box, width = element.bounding_box(), page.viewport_size["width"]
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, (box, width)


@pytest.mark.parametrize("look", [("phone", "dark")], ids=["phone-dark"])
def test_removing_a_storage_asks_in_the_page_and_gives_the_focus_back(browser, server, tmp_path, look):
    page = browser_page(browser, server, viewport=SIZES[look[0]], color_scheme=look[1])
    page.look = look
    sign_in(page, server, "admin")
    page.goto("/admin/storages")
    local = page.locator("form.storage-form").filter(has=page.locator('input[value="local"]'))
    local.get_by_label(re.compile("^Id")).fill("scratch")
    local.get_by_label("Folder on this server").fill(str(tmp_path / "scratch"))
    local.get_by_role("button", name="Add local storage").click()
    row = page.locator("tr").filter(has=page.locator("code", has_text="scratch"))
    remove = row.get_by_role("button", name="Remove")

    remove.click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_contain_text("Remove the storage scratch (scratch)?")
    assert_fits(page, confirm)
    page.keyboard.press("Escape")  # asked, not done
    expect(confirm).not_to_be_visible()
    expect(remove).to_be_focused()
    expect(row).to_be_visible()

    remove.click()
    confirm.get_by_role("button", name="Remove").click()
    expect(page.get_by_text("Storage scratch removed (no working link to revoke;")).to_be_visible()
    expect(row).to_have_count(0)
    assert (tmp_path / "scratch").is_dir()  # the files stay
    assert_holds(page)
    page.context.close()
