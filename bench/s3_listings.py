"""S3 prefixes a page at a time: pages in S3's own order against the same ListObjectsV2 requests
made straight with boto3 (moto's own time), and a size order, which lists a prefix whole once.

moto's standalone server reads every key of the bucket for each ListObjectsV2 request, so its LISTs
of a 100,000-object bucket take a few hundred ms each (AWS answers in tens of ms), and listing such
a prefix whole would take minutes: the size order is measured on a bucket of SMALL_COUNT objects.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median

from harness import free_port
from listing_pages import (
    API_GOAL,
    API_LIMIT,
    COUNT,
    HX,
    PAGE_GOAL,
    ROUNDS,
    Timings,
    explorer_path,
    files_path,
    ms,
    row,
    spread,
)
from servers import Bench, SeededMotoS3
from sessions import Session

SMALL_COUNT = 10_000
EXPLORER_PAGE = 100
S3_MAX_KEYS = 1000  # the app asks for one key more than a page, to tell whether more follow


@dataclass
class S3Timings:
    app: Timings = field(default_factory=Timings)
    moto: Timings = field(default_factory=Timings)  # the same ListObjectsV2 requests, from boto3

    def app_share(self) -> float:
        """What the app adds to moto's own time, for pages after the first (medians)."""
        return median(self.app.later) - median(self.moto.later)


@dataclass(frozen=True)
class S3Listings:
    explorer: S3Timings
    api: S3Timings
    by_size: S3Timings


def timed(call: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def next_link(body: bytes) -> str:
    """The explorer's Next link, which carries the cursor in S3's own order."""
    marker = body.index(">Next →</a>".encode())
    start = body.rindex(b'href="', 0, marker) + len(b'href="')
    return body[start : body.index(b'"', start)].decode().replace("&amp;", "&")


def through_app(session: Session, explorer: S3Timings, api: S3Timings) -> None:
    """The explorer's first page and Next, and the files API's first and next page."""
    first = session.get(explorer_path("s3-big", "big"))
    explorer.app.first.append(first.first_byte_seconds)
    explorer.app.later.append(session.get(next_link(first.body), HX).first_byte_seconds)
    page = session.get(files_path("s3-big", "big"))
    api.app.first.append(page.first_byte_seconds)
    cursor = json.loads(page.body)["next"]
    api.app.later.append(session.get(files_path("s3-big", "big", cursor)).first_byte_seconds)


def straight_from_moto(moto: SeededMotoS3, timings: S3Timings, page: int) -> None:
    """The two requests the app makes for a first and a next page of `page` entries, from boto3."""
    keys = min(page + 1, S3_MAX_KEYS)
    s3, listing = moto.client(), {"Bucket": moto.bucket, "Prefix": "big/", "Delimiter": "/", "MaxKeys": keys}
    seconds, answer = timed(lambda: s3.list_objects_v2(**listing))
    timings.moto.first.append(seconds)
    after = answer["Contents"][page - 1]["Key"]
    seconds, _ = timed(lambda: s3.list_objects_v2(**listing, StartAfter=after))
    timings.moto.later.append(seconds)


def in_store_order(bench: Bench, cookies: dict, moto: SeededMotoS3) -> tuple[S3Timings, S3Timings]:
    explorer, api = S3Timings(), S3Timings()
    for _ in range(ROUNDS):
        with Session(bench.oncelink.url, cookies) as session:
            through_app(session, explorer, api)
        straight_from_moto(moto, explorer, EXPLORER_PAGE)
        straight_from_moto(moto, api, API_LIMIT)
    return explorer, api


def by_size(bench: Bench, cookies: dict, moto: SeededMotoS3) -> S3Timings:
    """The first page lists the whole prefix (once: the listing is kept 30 s by the worker), the
    later ones page from it; the reference is boto3 listing the whole prefix."""
    timings = S3Timings()
    with Session(bench.oncelink.url, cookies) as session:
        first = session.get(explorer_path("s3-small", "big", "size", "desc"))
        timings.app.first.append(first.first_byte_seconds)
        for page in (2, SMALL_COUNT // 200, SMALL_COUNT // 100):
            answer = session.get(explorer_path("s3-small", "big", "size", "desc", page), HX)
            timings.app.later.append(answer.first_byte_seconds)
    pages = moto.client().get_paginator("list_objects_v2")
    seconds, _ = timed(lambda: list(pages.paginate(Bucket=moto.bucket, Prefix="big/", Delimiter="/")))
    timings.moto.first.append(seconds)
    return timings


def measure_s3_listings(bench: Bench, cookies: dict) -> S3Listings:
    workspace = bench.oncelink.workspace
    big = SeededMotoS3(workspace, free_port(), "listing-big", COUNT)
    small = SeededMotoS3(workspace, free_port(), "listing-small", SMALL_COUNT)
    with big.serving(), small.serving():
        bench.oncelink.add_s3_storage("s3-big", big)
        bench.oncelink.add_s3_storage("s3-small", small)
        return S3Listings(*in_store_order(bench, cookies, big), by_size(bench, cookies, small))


def with_moto(storage: str, request: str, app: list[float], moto: list[float], goal: float) -> list[str]:
    """A row whose reference is moto's own time; *met* also says what the app itself added."""
    cells = row(storage, request, app, goal, spread(moto))
    return [*cells[:-1], f"{cells[-1]} (the app's own share: {ms(median(app) - median(moto))})"]


def s3_rows(found: S3Listings) -> list[list[str]]:
    big, small = f"S3, {COUNT:,}", f"S3, {SMALL_COUNT:,}"
    explorer, api, size = found.explorer, found.api, found.by_size
    return [
        with_moto(
            big,
            "Explorer in S3's order: first page (1 LIST)",
            explorer.app.first,
            explorer.moto.first,
            PAGE_GOAL,
        ),
        with_moto(
            big,
            "Explorer in S3's order: Next (1 LIST from the cursor)",
            explorer.app.later,
            explorer.moto.later,
            PAGE_GOAL,
        ),
        with_moto(
            big,
            f"Files API, {API_LIMIT} a page: first page (1 LIST)",
            api.app.first,
            api.moto.first,
            API_GOAL,
        ),
        with_moto(
            big, "Files API: next page (1 LIST from the cursor)", api.app.later, api.moto.later, API_GOAL
        ),
        with_moto(
            small,
            "Explorer by size: first page (LISTs the whole prefix)",
            size.app.first,
            size.moto.first,
            PAGE_GOAL,
        ),
        row(small, "Explorer by size: pages 2, 50, 100 (the kept listing)", size.app.later, PAGE_GOAL, "-"),
    ]
