"""A folder of 100,000 files and S3 prefixes of many objects, a page at a time, against nginx's listing.

The goals from issue #11: the explorer's first page, and every later page, within 200 ms of server
time whether sorted by name, size or date; a files API page within 100 ms, with the worker's memory
flat; the same for an S3 prefix. The reference is nginx's JSON autoindex of the same folder, which
lists it whole. Server time is the time to the first byte of the answer, on a kept-alive connection
of a signed-in session (bench/sessions.py), so that a session's pages reach one worker, as a
browser's do; a session's first page from the other worker reads the scan the first one shared.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from harness import BenchError
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
from listing_workers import other_worker_session, serving_worker, shared_scans, wait_for_shared_scan
from report import Section
from s3_listings import SMALL_COUNT, S3Listings, measure_s3_listings, s3_rows
from servers import Bench
from sessions import Session
from workers import KiB, proc_field

FOLDER = "listings"  # in the backups folder, where nginx lists /listings/ as JSON
SETTLE_SECONDS = 1.05  # core/listings.py keeps no scan of a folder changed less than a second before it
USER, PASSWORD = "bench-viewer", "a bench viewer's password"
LATER_PAGES = (2, 500, 1000)
FLAT_GROWTH_MIB = 8.0
SORTS = [
    ("name", "", "by name"),
    ("size", "desc", "by size, largest first"),
    ("date", "desc", "by date, newest first"),
]


def write_folder(folder: Path, count: int) -> None:
    """`count` files of 0 to 996 bytes, so that the explorer looks for a header in most of them."""
    folder.mkdir()
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for number in range(count):
            file = os.open(f"backup-{number:06d}.sql.gz", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
            os.write(file, b"x" * (number % 997))
            os.close(file)
    finally:
        os.close(fd)


def settle(folder: Path) -> None:
    """Wait until the folder's last change is old enough for a scan of it to be kept."""
    while time.time() - folder.stat().st_ctime < SETTLE_SECONDS:
        time.sleep(0.05)


def change_and_settle(folder: Path) -> None:
    """A name added and removed: the folder's version moves, so a kept scan of it must be patched."""
    (folder / "bench-touch").touch()
    (folder / "bench-touch").unlink()
    settle(folder)


@contextmanager
def never_listed(backups: Path, name: str) -> Iterator[str]:
    """The bench folder under a name no worker has listed (so has kept no scan of), settled."""
    (backups / FOLDER).rename(backups / name)
    try:
        settle(backups / name)
        yield name
    finally:
        (backups / name).rename(backups / FOLDER)


def explorer_timings(bench: Bench, cookies: dict, sort: str, order: str) -> Timings:
    """Each round on one connection, so one worker: a first page of the folder never listed, the
    first page from the other worker, the first page again after a change, then later pages."""
    backups, timings = bench.oncelink.workspace.backups, Timings()
    with Session(bench.oncelink.url, cookies) as session:
        for round in range(ROUNDS):
            with never_listed(backups, f"{FOLDER}-{sort}-{round}") as folder:
                written = shared_scans(bench)
                timings.cold.append(explorer_first_page(session, folder, sort, order))
                wait_for_shared_scan(bench, written)
                with other_worker_session(bench, cookies, serving_worker(bench, session)) as other:
                    timings.other.append(explorer_first_page(other, folder, sort, order))
                change_and_settle(backups / folder)
                timings.first.append(explorer_first_page(session, folder, sort, order))
                for page in LATER_PAGES:
                    answer = session.get(explorer_path("local", folder, sort, order, page), HX)
                    timings.later.append(answer.first_byte_seconds)
    return timings


def explorer_first_page(session: Session, folder: str, sort: str, order: str) -> float:
    answer = session.get(explorer_path("local", folder, sort, order))
    if f"{COUNT} entries".encode() not in answer.body:
        raise BenchError(f"The explorer's first page by {sort} does not count {COUNT} entries.")
    return answer.first_byte_seconds


@dataclass
class ApiWalk:
    timings: Timings
    entries: int
    rss: list[int]  # the serving worker's RSS in KiB: before, after the first page, after the last

    def mib(self, reading: int) -> float:
        return self.rss[reading] / KiB


def walk_files_api(bench: Bench, cookies: dict) -> ApiWalk:
    """First pages of the folder never listed and after a change, each round on one connection;
    then, on the last, the whole folder through the cursor."""
    backups, timings = bench.oncelink.workspace.backups, Timings()
    for round in range(ROUNDS):
        name = f"{FOLDER}-api-{round}"
        with never_listed(backups, name) as folder, Session(bench.oncelink.url, cookies) as session:
            session.get("/api/storages")  # connects: tells which worker serves the round
            worker = serving_worker(bench, session)
            rss = [proc_field(worker, "status", "VmRSS")]
            written = shared_scans(bench)
            timings.cold.append(session.get(files_path("local", folder)).first_byte_seconds)
            wait_for_shared_scan(bench, written)
            with other_worker_session(bench, cookies, worker) as other:
                timings.other.append(other.get(files_path("local", folder)).first_byte_seconds)
            change_and_settle(backups / folder)
            answer = session.get(files_path("local", folder))
            timings.first.append(answer.first_byte_seconds)
            rss.append(proc_field(worker, "status", "VmRSS"))
            if round == ROUNDS - 1:
                entries = walk_pages(session, folder, json.loads(answer.body), timings)
                rss.append(proc_field(worker, "status", "VmRSS"))
    return ApiWalk(timings, entries, rss)


def walk_pages(session: Session, folder: str, page: dict, timings: Timings) -> int:
    """Every page after `page`, through the cursor; the entries of all, `page` included."""
    entries = len(page["entries"])
    while page["next"]:
        answer = session.get(files_path("local", folder, page["next"]))
        timings.later.append(answer.first_byte_seconds)
        page = json.loads(answer.body)
        entries += len(page["entries"])
    return entries


def stat_floor(folder: Path) -> float:
    """The least a size or date order costs in Python: a bare loop of one fstatat per entry."""
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        with os.scandir(folder) as children:
            for child in children:
                child.stat(follow_symlinks=False)
        times.append(time.perf_counter() - started)
    return min(times)


def nginx_listing(bench: Bench) -> list[float]:
    """nginx's JSON autoindex of the whole folder: time to the first byte and to the last."""
    times = []
    with Session(bench.nginx.url) as session:
        for _ in range(ROUNDS):
            answer = session.get(f"/{FOLDER}/")
            if len(json.loads(answer.body)) != COUNT:
                raise BenchError("nginx's listing does not hold every file of the folder.")
            times.append(answer.seconds)
    return times


def local_rows(reference: list[float], explorer: dict[str, Timings], walk: ApiWalk) -> list[list[str]]:
    rows = [["local", "nginx: the whole folder as JSON (to the last byte)", "-", spread(reference), "-", "-"]]
    for sort, _, label in SORTS:
        rows += [
            row(
                "local", f"Explorer {label}: first page, folder never listed", explorer[sort].cold, PAGE_GOAL
            ),
            row(
                "local",
                f"Explorer {label}: first page, from the other worker",
                explorer[sort].other,
                PAGE_GOAL,
            ),
            row("local", f"Explorer {label}: first page after a change", explorer[sort].first, PAGE_GOAL),
            row("local", f"Explorer {label}: pages 2, 500, 1000", explorer[sort].later, PAGE_GOAL),
        ]
    first = f"Files API, {API_LIMIT} a page: first page"
    return [
        *rows,
        row("local", f"{first}, folder never listed", walk.timings.cold, API_GOAL),
        row("local", f"{first}, from the other worker", walk.timings.other, API_GOAL),
        row("local", f"{first} after a change", walk.timings.first, API_GOAL),
        row(
            "local",
            f"Files API: the {len(walk.timings.later)} later pages, by cursor",
            walk.timings.later,
            API_GOAL,
        ),
    ]


ABOUT = (
    f"A folder of {COUNT:,} files (0-996 bytes each, most of them long enough to be looked into for an "
    "encryption header) in the local storage, listed by nginx's `autoindex_format json` and paged by "
    "Oncelink. Times are milliseconds of server time: to the first byte of the answer, median of "
    f"{ROUNDS} rounds (min-max), each round on one kept-alive connection of a signed-in viewer, so "
    "one worker. A round renames the folder to a name no worker has listed, then asks for its *first "
    "page, folder never listed*: the worker scans the folder (and, by size or date, stats every "
    "file), and the other worker's *first page from the other worker* is asked for once the first "
    "has written its scan to the data dir (core/shared_scans.py), sorted in the order asked, which the "
    "other reads rather than scanning and sorting. Then a name is added to the folder and removed "
    "again, so that the worker's kept scan no longer holds, and the *first page after a change* "
    "patches it: the folder's inotify watch tells "
    "the names that changed, and only those are looked at (on a filesystem inotify cannot follow, "
    "such as NFS, the names are read again). *Later pages* follow on the same connection. The S3 "
    "rows use moto's standalone "
    "server holding the objects (tools/seeded_moto.py); its *reference* is the same ListObjectsV2 "
    "request made with boto3, which is moto's own time."
)


def notes(walk: ApiWalk, reference: list[float], floor: float) -> str:
    before, first, last = (walk.mib(reading) for reading in range(3))
    return (
        f"nginx lists the whole folder in {ms(median(reference))} ms, and a first page by size or date "
        "of a folder never listed needs what that costs: every file's size and date, one stat each (a "
        f"bare Python loop of {COUNT:,} fstatat calls took {ms(floor)} ms here), then the sort. After "
        "that, the worker's inotify watch on the folder tells which names came, went or changed, so a "
        "change costs a stat of those names alone, with no read of the folder, and sizes and dates "
        "stay current (all looked at again in the background every 10 minutes, for what no watch sees, "
        "every 30 s where folders are among the rows); "
        "the rows a page shows are always looked at afresh. The files API walked all "
        f"{walk.entries:,} entries in {len(walk.timings.later) + 1} pages on one connection; the serving "
        f"worker's RSS was {before:.0f} MiB before, {first:.0f} MiB after the first page (the scan it "
        f"keeps: names, kinds and the order, a few MB per 100,000 entries) and {last:.0f} MiB after the "
        "last. A worker's fresh scan of a large folder is written to the data dir after the page that "
        "made it: the other worker, or this one after a restart, reads it and checks it by the "
        "folder's version rather than scanning. moto reads every key of the bucket for each "
        "ListObjectsV2 request, so its LISTs "
        f"of a {COUNT:,}-object bucket take a few hundred ms each, where AWS answers in tens of ms: "
        f"listing such a prefix whole (for a size order) would take minutes here, hence {SMALL_COUNT:,} "
        "objects for that row."
    )


def judged(times: list[float], goal: float, what: str = "") -> str:
    """'met (123 ms)' for the median; met only when every time in `times` is within the goal."""
    return f"{'met' if max(times) < goal else 'NOT met'} ({what}{ms(median(times))} ms)"


def against_nginx(times: list[float], nginx: float) -> str:
    return f"{judged(times, PAGE_GOAL)}, {median(times) / nginx:.2f}x nginx's whole listing"


def verdict(explorer: dict[str, Timings], walk: ApiWalk, s3: S3Listings, floor: float, nginx: float) -> str:
    firsts = ", ".join(f"by {sort} {judged(explorer[sort].first, PAGE_GOAL)}" for sort, _, _ in SORTS)
    colds = ", ".join(f"by {sort} {against_nginx(explorer[sort].cold, nginx)}" for sort, _, _ in SORTS)
    later = [max(time for timings in explorer.values() for time in timings.later)]
    others = ", ".join(f"by {sort} {judged(explorer[sort].other, PAGE_GOAL)}" for sort, _, _ in SORTS)
    growth = walk.mib(2) - walk.mib(1)
    shares = [s3.explorer.app_share(), s3.api.app_share()]
    return (
        f"explorer: first page after a change {firsts}; every later page "
        f"{judged(later, PAGE_GOAL, 'at most ')}; first page from the other worker {others}; first page "
        f"of a folder never listed {colds} (a size or date order stats every file first, {ms(floor)} ms "
        f"here at the least). Files API: first page after a change {judged(walk.timings.first, API_GOAL)}, "
        f"from the other worker {judged(walk.timings.other, API_GOAL)}, of a folder never listed "
        f"{judged(walk.timings.cold, API_GOAL)}, every later page "
        f"{judged([max(walk.timings.later)], API_GOAL, 'at most ')}; memory "
        f"{'flat' if growth <= FLAT_GROWTH_MIB else 'NOT flat'} (+{growth:.1f} MiB over the later pages, "
        f"threshold {FLAT_GROWTH_MIB:.0f} MiB). S3: a page in "
        f"S3's order is one LIST, to which the app adds {ms(min(shares))}-{ms(max(shares))} ms; moto's own "
        "LIST is what misses the goals. A size order lists the prefix whole once, then pages from it in "
        f"{ms(max(s3.by_size.app.later))} ms at most."
    )


def measure_listings(bench: Bench) -> Section:
    """Explorer and files API pages of a 100,000-file folder and of S3 prefixes, against nginx."""
    write_folder(bench.oncelink.workspace.backups / FOLDER, COUNT)
    bench.oncelink.create_user(USER, "viewer", PASSWORD)
    with Session(bench.oncelink.url) as session:
        session.sign_in(USER, PASSWORD)
        cookies = session.cookies
    reference = nginx_listing(bench)
    floor = stat_floor(bench.oncelink.workspace.backups / FOLDER)
    explorer = {sort: explorer_timings(bench, cookies, sort, order) for sort, order, _ in SORTS}
    walk = walk_files_api(bench, cookies)
    s3 = measure_s3_listings(bench, cookies)
    return Section(
        title=f"Listings: a folder of {COUNT:,} files, a page at a time",
        about=ABOUT,
        columns=["Storage", "Request", "Oncelink, ms", "Reference, ms", "Goal, ms", "Met"],
        rows=local_rows(reference, explorer, walk) + s3_rows(s3),
        notes=notes(walk, reference, floor),
        verdict=verdict(explorer, walk, s3, floor, median(reference)),
    )
