"""Backups in an S3 bucket, proxied by Oncelink, against boto3 reading them straight from the bucket.

The goals from the issue: a download through an S3 storage in proxy mode, plain or decrypted,
runs at least 0.8x as fast as boto3 downloading the same object from the same S3 server, and a
worker's memory stays flat whatever the object's size. The S3 server is moto's standalone server
on loopback, started for this section and stopped with it; the test files and their encrypted
copies are uploaded before anything is timed (s3_transfers.py measures, moto_probes.py tells
moto's own share).
"""

from __future__ import annotations

from decrypted_downloads import memory_cell, spread_cell
from harness import MiB, free_port
from moto_probes import PROBE_ROUNDS, DefaultTransfer, default_transfer
from raw_downloads import memory_verdict
from report import Section
from s3_transfers import BUCKET, KINDS, ROUNDS, Downloads, Observed, S3Bench, observe, stock_bucket
from servers import Bench, MotoS3
from workers import CpuTime

GOAL_RATIO = 0.8


def requests_cell(downloads: Downloads) -> str:
    counts = [f"{downloads.per_download(method):g} {method}" for method in sorted(downloads.requests)]
    return " + ".join(counts) or "none"


def common_cells(label: str, downloads: Downloads, ratio: float) -> list[str]:
    return [
        label,
        spread_cell([t.mib_per_second for t in downloads.transfers]),
        f"{ratio:.2f}x",
        requests_cell(downloads),
        f"{downloads.first_byte_seconds * 1000:,.0f}",
        f"{downloads.streaming_mib_per_second:,.0f}",
    ]


def cpu_cell(downloads: Downloads, workers: CpuTime | None = None) -> str:
    moto = f"{downloads.cpu_each(downloads.moto):.2f}"
    return f"{moto} / -" if workers is None else f"{moto} / {downloads.cpu_each(workers):.2f}"


def observed_rows(observed: Observed) -> list[list[str]]:
    """The reference first, then each kind through the app, with its worker's memory."""
    label, reference = observed.stored.label, observed.reference
    first = [*common_cells(f"{label} {KINDS[0][0]}", reference, 1.0), cpu_cell(reference), "-"]
    return [first] + [
        [*common_cells(f"{label} {name}", d, observed.ratio(d)), cpu_cell(d, d.workers), memory_cell(w)]
        for (name, d), w in zip(observed.through_app(), observed.workers, strict=True)
    ]


S3_ABOUT = (
    "moto's standalone S3 server (`moto_server`, werkzeug) on loopback holds both test files and their "
    "`.enc` copies from the previous section, uploaded with boto3 before anything is timed. The app has "
    "the bucket as an S3 storage in proxy mode (`storages add-s3 --path-style`, no `--redirect`), so "
    "every byte passes through a worker: plain objects are read from ranged GET streams and sent to "
    "the client block by block (no sendfile), encrypted ones decrypted chunk by chunk. *boto3 direct* is "
    "the reference: `download_fileobj` of the plain object from the same moto, in the bench process, "
    "into a sink that discards the bytes, as one GET stream (why, in the notes). MiB/s of plaintext, "
    f"median of {ROUNDS} downloads of each kind (fewer than for local files, to keep `make bench` within "
    "a few minutes), each round starting with the next kind; min-max in brackets; curl, and the sink, "
    "check that exactly the plaintext size arrived. Minting a link is neither timed nor counted. *S3 "
    "requests each*: what moto logged during a download, per download. *First byte* (median) and *MiB/s "
    "after it* (the size over the time from the first byte to the last, median) split each download "
    "into waiting and streaming. *CPU s each*: user + system time per download, on average, of moto and "
    "of all gunicorn workers; moto, the worker and curl share this machine's CPUs. *Worker RSS*: the "
    "serving worker's before / peak (growth) during one more download, watched as in the sections "
    "above; the serving worker is the one holding a connection to moto."
)


def direct_note(default: DefaultTransfer, smallest: Observed) -> str:
    return (
        "boto3 reads with one GET here because with its default TransferConfig (8 MiB ranged GETs on 10 "
        f"threads) it fetched the {smallest.stored.label} object at "
        f"{default.transfer.mib_per_second:,.0f} MiB/s in {default.gets} GETs, against "
        f"{smallest.reference.mib_per_second:,.0f} MiB/s with one: moto reads the whole object out of its "
        "store for every GET, ranged or not, before it slices the range. Against real S3 the parallel GETs "
        "would be the faster reference; one stream compares like with like, as the app reads one stream."
    )


def probe_note(observed: list[Observed]) -> str:
    def ms(seconds: float) -> str:
        return f"{seconds * 1000:,.0f} ms"

    one_byte = " and ".join(f"{ms(o.probes.one_byte)} ({o.stored.label})" for o in observed)
    from_offset = " and ".join(f"{ms(o.probes.from_offset)} ({o.stored.label})" for o in observed)
    return (
        f"moto takes {one_byte} to start answering a GET for one byte, and {from_offset} for a GET from "
        f"the second byte to the end, as a reader that skips a header asks (medians of {PROBE_ROUNDS}): "
        "a cost per GET that grows with the object, where real S3 starts answering in tens of "
        "milliseconds whatever the size."
    )


def if_first_byte_as_boto3(downloads: Downloads, observed: Observed) -> str:
    """The download's rate had its first byte come when boto3's did, its streaming unchanged."""
    size = observed.stored.size / MiB
    seconds = observed.reference.first_byte_seconds + size / downloads.streaming_mib_per_second
    rate = size / seconds
    return f"about {rate:,.0f} MiB/s ({rate / observed.reference.mib_per_second:.2f}x)"


def where_the_time_goes(largest: Observed) -> str:
    reference = largest.reference
    (_, plain), (_, sealed) = largest.through_app()

    def waited(d: Downloads) -> str:
        share = d.first_byte_seconds / d.seconds
        return f"{d.first_byte_seconds * 1000:,.0f} ms ({share:.0%} of its time)"

    return (
        f"Where the time goes ({largest.stored.label}): boto3 had its first byte after "
        f"{reference.first_byte_seconds * 1000:,.0f} ms, one GET. Through the app the proxied download "
        f"waited {waited(plain)} and the decrypted one {waited(sealed)}: the app reads an object front to "
        "back, one GET after the other, so its first byte waits for every GET it makes, here "
        f"{plain.per_download('GET'):g} and {sealed.per_download('GET'):g}, each of which moto takes at "
        "least the probe's time to start answering. Once bytes flowed they ran at "
        f"{plain.streaming_mib_per_second:,.0f} and {sealed.streaming_mib_per_second:,.0f} MiB/s "
        f"(boto3: {reference.streaming_mib_per_second:,.0f}), the workers using "
        f"{plain.cpu_each(plain.workers):.2f} and {sealed.cpu_each(sealed.workers):.2f} s of CPU per "
        f"download. Had their first byte come as soon as boto3's, they would have run at "
        f"{if_first_byte_as_boto3(plain, largest)} and {if_first_byte_as_boto3(sealed, largest)}: an "
        "estimate, not a measurement."
    )


def s3_notes(observed: list[Observed], default: DefaultTransfer) -> str:
    smallest, largest = observed[0], observed[-1]
    return f"{direct_note(default, smallest)} {probe_note(observed)} {where_the_time_goes(largest)}"


def s3_verdict(observed: list[Observed]) -> str:
    ratio, label = min(
        (o.ratio(d), f"{o.stored.label} {name}") for o in observed for name, d in o.through_app()
    )
    met = ratio >= GOAL_RATIO
    workers = [w for o in observed for kind in o.workers for w in kind]
    return (
        f"goal {'met' if met else 'NOT met'}: the slowest download through Oncelink ({label}) ran at "
        f"{ratio:.2f}x boto3 direct (goal: >= {GOAL_RATIO}x, proxied and decrypted alike, through moto); "
        f"{memory_verdict(workers)}"
    )


def measure_s3(bench: Bench) -> Section:
    """Downloads from moto through Oncelink (proxied, decrypted) against boto3 direct; worker memory."""
    moto = MotoS3(bench.oncelink.workspace, free_port(), BUCKET)
    with moto.serving() as server:
        s3 = S3Bench(bench, moto, server.pid, moto.client())
        stock = stock_bucket(s3)
        for _, download in KINDS:  # warm-up, not counted
            download(s3, stock[0])()
        default = default_transfer(moto, s3.client, stock[0].plain_key, stock[0].size)
        observed = [observe(s3, stored) for stored in stock]
    return Section(
        title="S3 storage: Oncelink vs boto3 direct (moto)",
        about=S3_ABOUT,
        columns=[
            "Download",
            "MiB/s",
            "x boto3 direct",
            "S3 requests each",
            "First byte, ms",
            "MiB/s after it",
            "CPU s each: moto / workers",
            "Worker RSS, MiB",
        ],
        rows=[row for o in observed for row in observed_rows(o)],
        notes=s3_notes(observed, default),
        verdict=s3_verdict(observed),
    )
