"""DBackup's encrypted backups served decrypted, beside the same plaintext in Oncelink's own format.

DBackup seals a whole backup under one AES-256-GCM tag kept in its sidecar, so the first download of
a backup reads and checks all of it before its first byte leaves (core/tag_checks.py); the verdict is
kept, and later links and resumes start at once, a resume decrypting from the middle at the counter
GCM used there. The goals from issue 15: a resume at the middle costs about what the same range of
Oncelink's format costs (within 1.5x of its time), and the first download, check included, runs at
least 0.5x as fast as Oncelink's format. The DBackup copy of the largest test file is written once,
before anything is timed, as DBackup writes it; it lives in the backups folder and goes with it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from aes_gcm import CipherSpeed, measure_aes_gcm, pinned_to_one_cpu
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from decrypted_downloads import Downloads, Encrypted, GiB, download, encrypt_backups, memory_cell, spread_cell
from harness import REPO, BenchError, MiB, curl_download
from raw_downloads import memory_verdict
from report import Section
from servers import Bench
from workers import WorkerUsage, opened, watch_workers

sys.path.insert(0, str(REPO))
from encryption import dbackup  # noqa: E402
from encryption.format import KEY_SIZE  # noqa: E402
from tests.dbackup_files import encrypt_file, sidecar_json  # noqa: E402

PROFILE = "bench-dbackup"
ROUNDS = 3  # of each kind of download, and of each measurement in process
PROFILE_ID = "5e1f0b4c-2d3a-4e5f-8a6b-7c8d9e0f1a2b"  # as DBackup's Vault names a profile
RESUME_GOAL = 1.5  # at most this many times the time of the same range in Oncelink's format
FIRST_GOAL = 0.5  # at least this fraction of Oncelink's format's MiB/s, the check included


@dataclass(frozen=True)
class DBackupCopy:
    """A test file, and the same bytes as DBackup would have encrypted them: `.enc` and sidecar."""

    plain: Path
    backup: Path
    key: bytes
    sidecar: dbackup.Sidecar

    @property
    def size(self) -> int:
        return self.plain.stat().st_size

    @property
    def middle(self) -> int:
        return self.size // 2


def seal_in_pieces(plain: Path, target: Path, key: bytes, iv: bytes) -> bytes:
    """GCM over the file a MiB at a time (never the whole file in memory); returns the tag."""
    sealer = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    with plain.open("rb") as source, target.open("wb") as out:
        while piece := source.read(MiB):
            out.write(sealer.update(piece))
        out.write(sealer.finalize())
    return sealer.tag


def write_dbackup_copy(plain: Path) -> DBackupCopy:
    """`NAME.dbackup.enc` and its sidecar beside `plain`: with Node's crypto, as DBackup itself
    encrypts, where Node is installed (`make bench` installs it), else with `cryptography`."""
    key, iv = os.urandom(KEY_SIZE), os.urandom(dbackup.IV_SIZE)
    target = plain.with_name(f"{plain.name}.dbackup.enc")
    seal = encrypt_file if shutil.which("node") else seal_in_pieces  # encrypt_file streams with Node
    tag = seal(plain, target, key, iv)
    target.with_name(dbackup.sidecar_name(target.name)).write_text(sidecar_json(PROFILE_ID, iv, tag))
    return DBackupCopy(plain, target, key, dbackup.Sidecar(PROFILE_ID, iv, tag))


def import_key(bench: Bench, copy: DBackupCopy) -> None:
    """The profile's key as an admin imports it: `keys import-dbackup` with the key on stdin."""
    bench.oncelink.flask("keys", "import-dbackup", PROFILE, "--profile-id", PROFILE_ID, stdin=copy.key.hex())


def database(bench: Bench) -> Path:
    return bench.oncelink.workspace.instance / "oncelink.sqlite3"


def forget_verdicts(bench: Bench) -> None:
    """Every kept tag verdict (in the bench's database, only this backup's), so the next link checks."""
    with closing(sqlite3.connect(database(bench), timeout=30)) as db, db:
        db.execute("DELETE FROM tag_verdicts")


def require_verdict(bench: Bench) -> None:
    """A first download left its verdict, so the next link's figures are those of a known tag."""
    with closing(sqlite3.connect(database(bench), timeout=30)) as db:
        intact = db.execute("SELECT intact FROM tag_verdicts").fetchall()
    if intact != [(1,)]:
        raise BenchError(f"expected one good tag verdict after the first download, found {intact}")


@dataclass
class Rounds:
    """The downloads of each kind, ROUNDS of each."""

    own: Downloads  # Oncelink's format, decrypted, whole
    first: Downloads  # DBackup, tag not yet checked
    known: Downloads  # DBackup, verdict kept
    own_half: Downloads  # Oncelink's format from the middle
    dbackup_half: Downloads  # DBackup from the middle, verdict kept


def download_rounds(bench: Bench, own: Encrypted, copy: DBackupCopy) -> Rounds:
    """ROUNDS of each kind in turn; before each DBackup first download the verdict is forgotten."""
    rounds = Rounds(Downloads(), Downloads(), Downloads(), Downloads(), Downloads())
    for _ in range(ROUNDS):
        download(bench, own.encrypted, own.size, rounds.own)
        forget_verdicts(bench)
        download(bench, copy.backup, copy.size, rounds.first)
        require_verdict(bench)
        download(bench, copy.backup, copy.size, rounds.known)
        download(bench, own.encrypted, own.size, rounds.own_half, start=copy.middle)
        download(bench, copy.backup, copy.size, rounds.dbackup_half, start=copy.middle)
    return rounds


def watch_first_download(bench: Bench, copy: DBackupCopy) -> list[WorkerUsage]:
    """Every worker during one more first download: the whole-file check, then the stream."""
    forget_verdicts(bench)
    url = bench.oncelink.mint_link(copy.backup)
    with watch_workers(bench.gunicorn_master, opened(copy.backup)) as workers:
        curl_download(url, copy.size)
    return list(workers.values())


def cpu_seconds(work: Callable[[], object]) -> float:
    """The thread's own CPU time (user and system) for `work`: other load on the machine not counted."""
    started = time.thread_time()
    work()
    return time.thread_time() - started


def in_process(work: Callable[[], object]) -> list[float]:
    """CPU seconds of ROUNDS runs of `work`, pinned to one CPU as the cipher alone is (aes_gcm.py)."""
    with pinned_to_one_cpu():
        return [cpu_seconds(work) for _ in range(ROUNDS)]


def verify_whole(copy: DBackupCopy) -> None:
    with copy.backup.open("rb") as source:
        dbackup.verify(source, copy.key, copy.sidecar, copy.size)


def decrypt_and_discard(copy: DBackupCopy, start: int, stop: int) -> None:
    first = dbackup.first_counter(copy.key, copy.sidecar.iv)
    with copy.backup.open("rb") as source:
        for _ in dbackup.decrypt_range(source, copy.key, first, start, stop):
            pass


@dataclass(frozen=True)
class InProcess:
    """CPU seconds per round in the bench process: the check alone, and the two ways to the middle."""

    verify: list[float]
    to_middle: list[float]  # decrypting from the start and discarding up to the middle
    from_middle: list[float]  # decrypting the second half from its own counter
    cipher: CipherSpeed


def measure_in_process(copy: DBackupCopy) -> InProcess:
    return InProcess(
        verify=in_process(lambda: verify_whole(copy)),
        to_middle=in_process(lambda: decrypt_and_discard(copy, 0, copy.middle)),
        from_middle=in_process(lambda: decrypt_and_discard(copy, copy.middle, copy.size)),
        cipher=measure_aes_gcm(),
    )


def first_byte_ms(downloads: Downloads) -> float:
    return median(t.first_byte_seconds for t in downloads.transfers) * 1000


def seconds(downloads: Downloads) -> float:
    return median(t.seconds for t in downloads.transfers)


def speeds(size: int, times: list[float]) -> list[float]:
    return [size / MiB / t for t in times]


def download_row(label: str, downloads: Downloads, compared: str, memory: str = "-") -> list[str]:
    cpu = downloads.cpu_per_gib()
    return [
        label,
        f"{first_byte_ms(downloads):,.0f}",
        f"{seconds(downloads):.2f}",
        spread_cell([t.mib_per_second for t in downloads.transfers]),
        compared,
        f"{cpu.user:.2f} + {cpu.system:.2f}",
        memory,
    ]


def faster(downloads: Downloads, reference: Downloads) -> str:
    return f"{downloads.mib_per_second / reference.mib_per_second:.2f}x its MiB/s"


def slower(downloads: Downloads, reference: Downloads) -> str:
    return f"{seconds(downloads) / seconds(reference):.2f}x its time"


def process_row(label: str, size: int, times: list[float], compared: str) -> list[str]:
    return [label, "-", f"{median(times):.2f}", spread_cell(speeds(size, times)), compared, "-", "-"]


@dataclass(frozen=True)
class Observed:
    """Everything this section measured."""

    label: str
    copy: DBackupCopy
    rounds: Rounds
    workers: list[WorkerUsage]
    measured: InProcess

    def download_rows(self) -> list[list[str]]:
        rounds, label, middle = self.rounds, self.label, self.copy.middle
        return [
            download_row(f"{label} Oncelink's format, decrypted", rounds.own, "reference"),
            download_row(
                f"{label} DBackup, first link (tag checked first)",
                rounds.first,
                faster(rounds.first, rounds.own),
                memory_cell(self.workers),
            ),
            download_row(f"{label} DBackup, tag known", rounds.known, faster(rounds.known, rounds.own)),
            download_row(f"`-r {middle}-`, Oncelink's format", rounds.own_half, "reference"),
            download_row(
                f"`-r {middle}-`, DBackup, tag known",
                rounds.dbackup_half,
                slower(rounds.dbackup_half, rounds.own_half),
            ),
        ]

    def process_rows(self) -> list[list[str]]:
        measured, size, middle = self.measured, self.copy.size, self.copy.middle
        cipher, check = measured.cipher, median(speeds(size, measured.verify))
        saved, own = median(measured.to_middle), median(measured.from_middle)
        return [
            process_row(
                "In process: the tag check alone (`dbackup.verify`)",
                size,
                measured.verify,
                f"{check / cipher.median:.2f}x AES-GCM alone",
            ),
            process_row(
                f"In process: AES-256-GCM alone (CPU {cipher.cpu}, aes_gcm.py)",
                GiB,
                [GiB / MiB / speed for speed in cipher.speeds],
                "reference",
            ),
            process_row(
                "In process: to the middle without the counter (decrypt 0-middle, discard)",
                middle,
                measured.to_middle,
                f"+{saved:.2f} s before the first byte; the half from its counter: {own:.2f} s",
            ),
        ]


def observe(bench: Bench) -> Observed:
    label, plain = max(bench.files.items(), key=lambda item: item[1].stat().st_size)
    own = encrypt_backups(bench)[label]
    copy = write_dbackup_copy(plain)
    import_key(bench, copy)
    curl_download(bench.oncelink.mint_link(copy.backup), copy.size)  # warm-up and a first check, not counted
    rounds = download_rounds(bench, own, copy)
    return Observed(label, copy, rounds, watch_first_download(bench, copy), measure_in_process(copy))


DBACKUP_ABOUT = (
    "The largest test file, written once beforehand (not timed) as DBackup writes a backup: the raw "
    "AES-256-GCM ciphertext of the whole file under a 16-byte IV (Node's `crypto`, as DBackup uses it, "
    "where Node is installed), the IV and tag in the `.meta.json` sidecar beside it; its key imported "
    "with `keys import-dbackup`. The same plaintext in Oncelink's own format is the `.enc` copy of the "
    "previous section. Every download is one `curl` to `/dev/null` through a fresh link, "
    f"median of {ROUNDS} of each kind, taken in turn; min-max MiB/s in brackets. *First link*: the "
    "tag's verdict is deleted from the bench's database (`tag_verdicts`) before each one, so the "
    "server reads and checks the whole file before its first byte, as for a backup never served "
    "before. *Tag known*: a second link to the same backup, the verdict kept. The `-r` rows ask for "
    "the second half, as a resume at the middle does: DBackup's decrypted from the block at the middle "
    "with AES-CTR at the counter GCM used there. *Seconds* is curl's total time; *Worker CPU* the "
    "gunicorn workers' user + system seconds per GiB sent. *In process* rows run in the bench process, "
    f"pinned to one CPU, in the thread's own CPU seconds (median of {ROUNDS}): the tag check alone over "
    "the file (reading it from the page cache included), beside AES-256-GCM alone as the previous "
    "section measures it, and what a resume at the middle would cost without the counter relation: "
    "decrypting from the start and discarding everything up to the middle. *Worker RSS* is the serving "
    "worker's before / peak (growth) during one more first download, check and stream."
)


def dbackup_notes(observed: Observed) -> str:
    rounds, measured = observed.rounds, observed.measured
    wait = first_byte_ms(rounds.first) - first_byte_ms(rounds.known)
    return (
        f"The first link waited {first_byte_ms(rounds.first) / 1000:.2f} s for its first byte, "
        f"{wait / 1000:.2f} s more than a link to a checked backup: the whole-file check, which alone "
        f"takes {median(measured.verify):.2f} s of CPU in process. Once checked, DBackup's backup "
        f"downloads at {rounds.known.mib_per_second / rounds.own.mib_per_second:.2f}x the MiB/s of "
        "Oncelink's format (one AES-CTR stream, against 64 KiB chunks each opened with its own tag). "
        "Without GCM's counter relation, a resume at the middle would first decrypt and throw away "
        f"{observed.copy.middle / MiB:,.0f} MiB: "
        f"{median(measured.to_middle):.2f} s of CPU before its first byte, where the server now starts "
        f"at once ({first_byte_ms(rounds.dbackup_half):,.0f} ms)."
    )


def resume_verdict(rounds: Rounds) -> str:
    ratio = seconds(rounds.dbackup_half) / seconds(rounds.own_half)
    met = ratio <= RESUME_GOAL
    return (
        f"goal {'met' if met else 'NOT met'}: a resume at the middle took {ratio:.2f}x the time of the "
        f"same range in Oncelink's format (goal: <= {RESUME_GOAL}x)"
    )


def first_download_verdict(rounds: Rounds) -> str:
    ratio = rounds.first.mib_per_second / rounds.own.mib_per_second
    met = ratio >= FIRST_GOAL
    return (
        f"goal {'met' if met else 'NOT met'}: the first download, its check included, ran at "
        f"{ratio:.2f}x the MiB/s of Oncelink's format (goal: >= {FIRST_GOAL}x)"
    )


def measure_dbackup(bench: Bench) -> Section:
    """DBackup's backup decrypted, first and checked, whole and from the middle, against Oncelink's format."""
    observed = observe(bench)
    return Section(
        title="DBackup's backups: the tag check, decrypted downloads and resumes",
        about=DBACKUP_ABOUT,
        columns=[
            "Download",
            "First byte, ms",
            "Seconds",
            "MiB/s",
            "Against the reference",
            "Worker CPU s/GiB (user + system)",
            "Worker RSS, MiB",
        ],
        rows=[*observed.download_rows(), *observed.process_rows()],
        notes=dbackup_notes(observed),
        verdict=(
            f"{first_download_verdict(observed.rounds)}; {resume_verdict(observed.rounds)}; "
            f"{memory_verdict(observed.workers)}"
        ),
    )
