"""The encrypted file format: round trips, ranges, and every way a file can be damaged."""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encryption.format import (
    CHUNK_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    FormatError,
    IntegrityError,
    NotEncrypted,
    decrypt_range,
    decrypt_stream,
    encrypt_stream,
    layout_for,
    new_header,
    parse_header,
    read_header,
)

KEY = bytes(range(32))
KEY_ID = bytes(range(16))
SMALL = 1024  # the smallest chunk size a header may carry: lets tests walk every byte quickly


def encrypt(plain: bytes, chunk_size: int = CHUNK_SIZE, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    assert encrypt_stream(io.BytesIO(plain), out, key, new_header(KEY_ID, chunk_size)) == len(plain)
    return out.getvalue()


def decrypt(sealed: bytes, key: bytes = KEY) -> bytes:
    return b"".join(decrypt_stream(io.BytesIO(sealed), key))


def decrypt_seekable(sealed: bytes, start: int = 0, stop: int | None = None, key: bytes = KEY) -> bytes:
    source = io.BytesIO(sealed)
    layout = layout_for(read_header(source), len(sealed))
    return b"".join(decrypt_range(source, key, layout, start, stop))


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 5])
def test_round_trip(size):
    plain = os.urandom(size)
    sealed = encrypt(plain)
    chunks = max(1, -(-size // CHUNK_SIZE))
    assert len(sealed) == HEADER_SIZE + size + chunks * TAG_SIZE
    layout = layout_for(parse_header(sealed[:HEADER_SIZE]), len(sealed))
    assert (layout.plaintext_size, layout.chunk_count) == (size, chunks)
    assert decrypt(sealed) == plain
    assert decrypt_seekable(sealed) == plain


def test_the_same_plaintext_encrypts_differently_each_time():
    assert encrypt(b"same") != encrypt(b"same")


def test_plain_files_are_recognised():
    with pytest.raises(NotEncrypted):
        parse_header(b"PK\x03\x04 a zip file")
    with pytest.raises(NotEncrypted):
        parse_header(b"")


def test_wrong_key_fails():
    with pytest.raises(IntegrityError):
        decrypt(encrypt(b"secret"), key=bytes(32))
    with pytest.raises(IntegrityError):
        decrypt_seekable(encrypt(b"secret"), key=bytes(32))


DAMAGE = (IntegrityError, FormatError, NotEncrypted)


def test_every_single_byte_flip_fails():
    sealed = encrypt(os.urandom(2 * SMALL + 300), SMALL)
    for position in range(len(sealed)):
        damaged = bytearray(sealed)
        damaged[position] ^= 0x01
        with pytest.raises(DAMAGE):
            decrypt(bytes(damaged))
        with pytest.raises(DAMAGE):
            decrypt_seekable(bytes(damaged))  # a range from 0 reads every chunk


@pytest.mark.parametrize("size", [3 * SMALL, 3 * SMALL + 100])
def test_truncation_at_every_chunk_boundary_and_anywhere_fails(size):
    sealed = encrypt(os.urandom(size), SMALL)
    sealed_chunk = SMALL + TAG_SIZE
    cuts = (
        {HEADER_SIZE + i * sealed_chunk for i in range(4)}
        | set(range(0, len(sealed), 97))
        | {len(sealed) - 1}
    )
    for cut in sorted(cut for cut in cuts if cut < len(sealed)):
        with pytest.raises(DAMAGE):
            decrypt(sealed[:cut])
        with pytest.raises(DAMAGE):
            decrypt_seekable(sealed[:cut])


def chunks_of(sealed: bytes, size: int = SMALL) -> list[bytes]:
    payload = sealed[HEADER_SIZE:]
    step = size + TAG_SIZE
    return [payload[i : i + step] for i in range(0, len(payload), step)]


def test_reordered_chunks_fail():
    sealed = encrypt(os.urandom(3 * SMALL + 10), SMALL)
    chunks = chunks_of(sealed)
    swapped = sealed[:HEADER_SIZE] + chunks[1] + chunks[0] + b"".join(chunks[2:])
    with pytest.raises(IntegrityError):
        decrypt(swapped)
    with pytest.raises(IntegrityError):
        decrypt_seekable(swapped, start=SMALL + 1)


def test_chunks_swapped_between_files_of_the_same_key_fail():
    first, second = encrypt(os.urandom(2 * SMALL + 10), SMALL), encrypt(os.urandom(2 * SMALL + 10), SMALL)
    a, b = chunks_of(first), chunks_of(second)
    mixed = first[:HEADER_SIZE] + a[0] + b[1] + a[2]
    with pytest.raises(IntegrityError):
        decrypt(mixed)
    with pytest.raises(IntegrityError):
        decrypt_seekable(mixed, start=SMALL)


def test_a_dropped_final_chunk_fails_even_at_a_boundary():
    sealed = encrypt(os.urandom(3 * SMALL), SMALL)  # exactly three full chunks, the third marked last
    without_last = sealed[: HEADER_SIZE + 2 * (SMALL + TAG_SIZE)]
    with pytest.raises(IntegrityError):
        decrypt(without_last)
    with pytest.raises(IntegrityError):
        decrypt_seekable(without_last, start=0)


def test_an_appended_empty_final_chunk_is_refused():
    sealed = encrypt(os.urandom(SMALL), SMALL)
    with pytest.raises(DAMAGE):
        decrypt(sealed + os.urandom(TAG_SIZE))
    with pytest.raises(DAMAGE):
        decrypt_seekable(sealed + os.urandom(TAG_SIZE))


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 5 * SMALL), data=st.data())
def test_any_range_equals_the_plaintext_slice(size, data):
    plain = os.urandom(size)
    sealed = encrypt(plain, SMALL)
    start = data.draw(st.integers(0, size))
    stop = data.draw(st.integers(start, size))
    assert decrypt_seekable(sealed, start, stop) == plain[start:stop]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=HEADER_SIZE + 8) | st.binary(max_size=HEADER_SIZE).map(lambda b: b"OLNK" + b))
def test_the_header_parser_only_accepts_or_refuses_cleanly(data):
    try:
        header = parse_header(data)
    except (NotEncrypted, FormatError):
        return
    assert header.to_bytes() == data[:HEADER_SIZE]
