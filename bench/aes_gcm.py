"""AES-256-GCM alone, in the bench process on one CPU: the speed decrypted downloads are held to.

The cipher as Oncelink's format uses it (encryption/format.py): `cryptography`'s AESGCM over
64 KiB plaintext chunks, each sealed with a 16-byte tag under its own 12-byte nonce (an 11-byte
big-endian counter, then the last-chunk flag). The sealed chunks sit in a 1 MiB buffer that
stays in the CPU cache, as the one chunk the app has just read does: this is the cipher's
speed, not the memory's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from statistics import median

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from harness import MiB

CHUNK_SIZE = 64 * 1024  # encryption.format.CHUNK_SIZE
BUFFER_CHUNKS = 16
BYTES_PER_ROUND = 1024 * MiB
ROUNDS = 5


@dataclass(frozen=True)
class CipherSpeed:
    """Plaintext MiB per CPU second of each round, and the CPU the measurement was pinned to."""

    cpu: int
    speeds: list[float]

    @property
    def median(self) -> float:
        return median(self.speeds)


def chunk_nonce(counter: int, last: bool) -> bytes:
    """As the format builds it, so that its cost is part of the figure."""
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def sealed_chunks(cipher: AESGCM) -> list[bytes]:
    return [
        cipher.encrypt(chunk_nonce(index, False), os.urandom(CHUNK_SIZE), None)
        for index in range(BUFFER_CHUNKS)
    ]


def decrypt_round(cipher: AESGCM, sealed: list[bytes]) -> float:
    """CPU seconds to open BYTES_PER_ROUND of plaintext, chunk by chunk, a fresh nonce for each.

    The thread's own CPU clock, not the wall clock: other work on the machine, which may share
    the pinned CPU, takes turns with this thread but does not count against the cipher.
    """
    started = time.thread_time()
    for counter in range(BYTES_PER_ROUND // CHUNK_SIZE):
        index = counter % BUFFER_CHUNKS
        cipher.decrypt(chunk_nonce(index, False), sealed[index], None)
    return time.thread_time() - started


@contextmanager
def pinned_to_one_cpu() -> Iterator[int]:
    """This thread on one CPU (the last it may use) for the block, then on all of them again."""
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    os.sched_setaffinity(0, {cpu})  # pid 0: the calling thread only
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, allowed)


def measure_aes_gcm() -> CipherSpeed:
    """ROUNDS rounds of decrypting 1 GiB in 64 KiB chunks, after one round of warm-up."""
    cipher = AESGCM(AESGCM.generate_key(bit_length=256))
    sealed = sealed_chunks(cipher)
    with pinned_to_one_cpu() as cpu:
        decrypt_round(cipher, sealed)
        speeds = [BYTES_PER_ROUND / MiB / decrypt_round(cipher, sealed) for _ in range(ROUNDS)]
    return CipherSpeed(cpu, speeds)
