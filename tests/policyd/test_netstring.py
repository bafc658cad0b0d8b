"""Netstring codec: every stream is fed in chunks from 4096 bytes down to 1 byte."""

from __future__ import annotations

import pytest

from postveil.policyd.netstring import NetstringDecoder, NetstringError, encode

READ_SIZES = [4096, 1024, 100, 17, 7, 3, 2, 1]

VALID_STREAMS = [
    (b"0:,", [b""]),
    (b"5:hello,", [b"hello"]),
    (b"5:hello,5:world,", [b"hello", b"world"]),
    (b"20:postveil example.org,", [b"postveil example.org"]),
    (b"3:a,b,1::,", [b"a,b", b":"]),
    (b"10:12:nested,,", [b"12:nested,"]),
    (b"6:\x00\xff\r\n:,,", [b"\x00\xff\r\n:,"]),
    (b"", []),
]

INVALID_STREAMS = [
    b"5:hello;",
    b"x:abc,",
    b"05:hello,",
    b"-1:a,",
    b"1234567890:",
    b"12345678901",
    b"abc",
    b"3:abcd,",
    b"99999:" + b"a" * 10,
]


def _feed(decoder: NetstringDecoder, stream: bytes, size: int) -> list[bytes]:
    out: list[bytes] = []
    for start in range(0, len(stream), size):
        out.extend(decoder.feed(stream[start : start + size]))
    return out


@pytest.mark.parametrize("size", READ_SIZES)
@pytest.mark.parametrize(("stream", "expected"), VALID_STREAMS)
def test_decoder_valid_stream(stream: bytes, expected: list[bytes], size: int) -> None:
    decoder = NetstringDecoder(max_length=1000)
    assert _feed(decoder, stream, size) == expected
    assert decoder.buffered == 0


@pytest.mark.parametrize("size", READ_SIZES)
@pytest.mark.parametrize("stream", INVALID_STREAMS)
def test_decoder_rejects_invalid_stream(stream: bytes, size: int) -> None:
    decoder = NetstringDecoder(max_length=1000)
    with pytest.raises(NetstringError):
        _feed(decoder, stream, size)


def test_decoder_keeps_partial_payload() -> None:
    decoder = NetstringDecoder(max_length=100)
    assert decoder.feed(b"5:hel") == []
    assert decoder.feed(b"lo,3:ab") == [b"hello"]
    assert decoder.feed(b"c,") == [b"abc"]


def test_decoder_length_limit_inclusive() -> None:
    decoder = NetstringDecoder(max_length=3)
    assert decoder.feed(b"3:abc,") == [b"abc"]
    with pytest.raises(NetstringError):
        decoder.feed(b"4:")


@pytest.mark.parametrize("payload", [b"", b"OK secure", b"x" * 100_000])
def test_encode_roundtrip(payload: bytes) -> None:
    decoder = NetstringDecoder(max_length=200_000)
    assert decoder.feed(encode(payload)) == [payload]
