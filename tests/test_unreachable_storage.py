"""A storage that does not answer (an S3 endpoint on a closed port, a local folder that vanished):
the explorer, the files API and the link dialog say so plainly, with a 503 and without the
endpoint's address; the app itself goes on."""

from __future__ import annotations

import shutil

import pytest

from core.storages import outage_reason
from storage.base import StorageError
from tests.conftest import add_s3, free_port

HTMX = {"HX-Request": "true"}


@pytest.fixture(params=["s3", "local"])
def unreachable(request, app, backups) -> tuple[str, str]:
    """The id of a storage that does not answer, and the address that must not be shown."""
    if request.param == "s3":
        port = free_port()  # nothing listens there: a real refused connection
        add_s3(app, "offsite", f"http://127.0.0.1:{port}", "backups")
        return "offsite", str(port)
    shutil.rmtree(backups)
    return "local", str(backups)


def assert_says_it_did_not_answer(answer, storage_id: str, address: str) -> None:
    assert answer.status_code == 503
    text = answer.get_data(as_text=True)
    assert f"The storage {storage_id} did not answer: " in text
    assert address not in text and "127.0.0.1" not in text and "://" not in text


def test_the_explorer_page_and_fragment(client, auth, unreachable):
    storage_id, address = unreachable
    auth.login("viewer")
    page = client.get(f"/browse/{storage_id}")
    assert_says_it_did_not_answer(page, storage_id, address)
    assert "<h1>Storage unavailable</h1>" in page.text and "Back to the storages" in page.text
    fragment = client.get(f"/browse/{storage_id}?path=nightly", headers=HTMX)
    assert_says_it_did_not_answer(fragment, storage_id, address)
    assert fragment.text.lstrip().startswith('<div class="error-box" role="alert">')
    assert client.get("/").status_code == 200  # the rest of the app goes on


def test_the_files_api(client, auth, unreachable):
    storage_id, address = unreachable
    auth.login("viewer")
    answer = client.get(f"/api/storage/{storage_id}/files")
    assert_says_it_did_not_answer(answer, storage_id, address)
    assert answer.json["success"] is False


def test_the_link_dialog_and_minting(client, auth, unreachable):
    storage_id, address = unreachable
    auth.login("operator")
    dialog = client.get(f"/browse/{storage_id}/link?path=db.sql.gz", headers=HTMX)
    assert_says_it_did_not_answer(dialog, storage_id, address)
    form = {"path": "db.sql.gz", "csrf_token": auth.csrf_token}
    minted = client.post(f"/browse/{storage_id}/link", data=form, headers={**HTMX, **auth.headers()})
    assert_says_it_did_not_answer(minted, storage_id, address)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            'Cannot reach the S3 endpoint (Could not connect to the endpoint URL: "http://10.0.0.7:9000/b").',
            "cannot reach the S3 endpoint.",
        ),
        (
            'S3 failed for db: Read timeout on endpoint URL: "https://minio.internal:9000/b/db"',
            "S3 failed for db: Read timeout on endpoint URL: [address hidden]",
        ),
        ("The storage folder is not available: No such file or directory.", None),
    ],
)
def test_the_reason_never_holds_an_address(message, reason):
    expected = reason or "the storage folder is not available: No such file or directory."
    assert outage_reason(StorageError(message)) == expected
