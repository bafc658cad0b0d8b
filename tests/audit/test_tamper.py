"""``postveil audit verify`` finds each kind of tampering and names the file and line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from postveil.audit import AuditLog, generate_key_file, list_log_files
from postveil.config.audit import AuditSection
from tests.audit.conftest import make_decision

RECORDS = 20


@pytest.fixture
def chain(make_section: Callable[..., AuditSection]) -> Path:
    """A directory with one file of RECORDS records and its audit.head."""
    section = make_section(rotate_size=0)
    with AuditLog(section, "test") as log:
        for number in range(1, RECORDS + 1):
            log.append(make_decision(number))
    return Path(section.directory)


def read_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def verify(
    cli: Callable[..., tuple[int, str, str]], key_file: Path, *files: Path
) -> tuple[int, str]:
    status, out, err = cli("audit", "verify", "--key-file", str(key_file), *map(str, files))
    assert err == ""
    return status, out


def test_verify_intact_chain(cli, key_file: Path, chain: Path) -> None:
    status, out = verify(cli, key_file, chain / "audit.jsonl")
    assert status == 0
    assert out.startswith(f"ok: {RECORDS} records (seq 1-{RECORDS}) in 1 file(s); end matches")


@pytest.mark.parametrize(
    ("line", "anchor", "expected"),
    [
        (7, b'"queue_id":"4Fq0000000', "HMAC does not match"),
        (7, b'"hmac":"', "HMAC does not match"),
        (7, b"{", "not valid JSON"),
        (RECORDS, b'"sender":"', "HMAC does not match"),
        (1, b'"prev":"', "HMAC does not match"),
    ],
    ids=["value", "hmac", "syntax", "last-record", "first-record"],
)
def test_verify_finds_one_changed_byte(
    cli, key_file: Path, chain: Path, line: int, anchor: bytes, expected: str
) -> None:
    """Flip the lowest bit of the byte right after ``anchor`` in the given line."""
    path = chain / "audit.jsonl"
    lines = read_lines(path)
    offset = lines[line - 1].index(anchor) + len(anchor)
    original = lines[line - 1]
    changed = original[:offset] + bytes([original[offset] ^ 0x01]) + original[offset + 1 :]
    assert len(changed) == len(original)
    lines[line - 1] = changed
    write_lines(path, lines)

    status, out = verify(cli, key_file, path)

    assert status == 1
    assert f"FAILED: {path}:{line}: {expected}" in out
    assert f"{line - 1} record(s) before it verified" in out


def test_verify_finds_whitespace_edit(cli, key_file: Path, chain: Path) -> None:
    path = chain / "audit.jsonl"
    lines = read_lines(path)
    lines[-1] = lines[-1].replace(b'"kind":', b'"kind": ', 1)
    write_lines(path, lines)

    status, out = verify(cli, key_file, path)

    assert status == 1
    assert f"{path}:{RECORDS}: bytes differ from the form the writer produces" in out


def test_verify_finds_deleted_record(cli, key_file: Path, chain: Path) -> None:
    path = chain / "audit.jsonl"
    lines = read_lines(path)
    del lines[6]
    write_lines(path, lines)

    status, out = verify(cli, key_file, path)

    assert status == 1
    assert f"{path}:7: seq 8 follows seq 6 at line 6: record 7 is missing here" in out


def test_verify_finds_swapped_records(cli, key_file: Path, chain: Path) -> None:
    path = chain / "audit.jsonl"
    lines = read_lines(path)
    lines[6], lines[7] = lines[7], lines[6]
    write_lines(path, lines)

    status, out = verify(cli, key_file, path)

    assert status == 1
    assert f"{path}:7: seq 8 follows seq 6" in out


def test_verify_finds_record_moved_back(cli, key_file: Path, chain: Path) -> None:
    path = chain / "audit.jsonl"
    lines = read_lines(path)
    moved = lines.pop(2)
    lines.insert(10, moved)
    write_lines(path, lines)

    status, out = verify(cli, key_file, path)

    assert status == 1
    assert f"{path}:3: seq 4 follows seq 2" in out


def test_verify_finds_duplicated_record(cli, key_file: Path, chain: Path) -> None:
    path = chain / "audit.jsonl"
    lines = read_lines(path)
    lines.insert(5, lines[4])
    write_lines(path, lines)

    status, out = verify(cli, key_file, path)

    assert status == 1
    assert f"{path}:6: seq 5 follows seq 5 at line 5: records are out of order or repeated" in out


def test_verify_finds_truncation_inside_record(cli, key_file: Path, chain: Path) -> None:
    path = chain / "audit.jsonl"
    data = path.read_bytes()
    cut = sum(len(line) for line in read_lines(path)[:9]) + 40
    path.write_bytes(data[:cut])

    status, out = verify(cli, key_file, path)

    assert status == 1
    assert f"{path}:10: incomplete record at the end of the file" in out


def test_verify_finds_truncation_at_record_boundary(cli, key_file: Path, chain: Path) -> None:
    path = chain / "audit.jsonl"
    write_lines(path, read_lines(path)[:-3])

    status, out = verify(cli, key_file, path)

    assert status == 1
    assert (
        f"{path}:{RECORDS - 3}: the chain ends at seq {RECORDS - 3}, but audit.head shows "
        f"records up to seq {RECORDS} were written: record(s) {RECORDS - 2}-{RECORDS} were removed"
    ) in out


def test_verify_finds_deleted_first_record(cli, key_file: Path, chain: Path) -> None:
    path = chain / "audit.jsonl"
    write_lines(path, read_lines(path)[1:])

    status, out = verify(cli, key_file, path)

    assert status == 1
    assert f"{path}:1: the chain starts at seq 2, so record 1 is missing" in out


def test_verify_finds_edited_head(cli, key_file: Path, chain: Path) -> None:
    head = chain / "audit.head"
    head.write_bytes(head.read_bytes().replace(b'"seq":20', b'"seq":19'))

    status, out = verify(cli, key_file, chain / "audit.jsonl")

    assert status == 1
    assert f"FAILED: {head}: HMAC does not match" in out


def test_verify_rejects_other_key(cli, tmp_path: Path, chain: Path) -> None:
    other_key = tmp_path / "other.key"
    generate_key_file(other_key)

    status, out = verify(cli, other_key, chain / "audit.jsonl")

    assert status == 1
    assert "which none of the given keys has" in out


@pytest.fixture
def rotated_chain(make_section: Callable[..., AuditSection]) -> list[Path]:
    """About 60 records over several files, rotated by size."""
    section = make_section(rotate_size="4KB")
    with AuditLog(section, "test") as log:
        for number in range(1, 61):
            log.append(make_decision(number))
    files = list_log_files(section.directory)
    assert len(files) >= 4
    return files


def test_verify_rotated_chain(cli, key_file: Path, rotated_chain: list[Path]) -> None:
    status, out = verify(cli, key_file, *rotated_chain)

    assert status == 0
    assert f"ok: 60 records (seq 1-60) in {len(rotated_chain)} file(s)" in out


def test_verify_defaults_to_configured_directory(
    cli, tmp_path: Path, key_file: Path, rotated_chain: list[Path]
) -> None:
    config = tmp_path / "postveil.yaml"
    config.write_text(f"audit:\n  directory: {rotated_chain[0].parent}\n  key_file: {key_file}\n")

    status, out, err = cli("audit", "verify", "--config", str(config))

    assert status == 0, err
    assert out.startswith("ok: 60 records")


@pytest.mark.parametrize(
    "arguments",
    [("audit", "-c", "CONFIG", "verify"), ("audit", "--config", "CONFIG", "verify"), ("audit", "verify", "-c", "CONFIG")],
)
def test_verify_config_option_positions(
    cli, tmp_path: Path, key_file: Path, rotated_chain: list[Path], arguments: tuple[str, ...]
) -> None:
    config = tmp_path / "postveil.yaml"
    config.write_text(f"audit:\n  directory: {rotated_chain[0].parent}\n  key_file: {key_file}\n")

    status, out, err = cli(*(str(config) if argument == "CONFIG" else argument for argument in arguments))

    assert status == 0, err
    assert out.startswith("ok: 60 records")


def test_verify_finds_edit_in_older_rotated_file(
    cli, key_file: Path, rotated_chain: list[Path]
) -> None:
    older = rotated_chain[0]
    lines = read_lines(older)
    lines[1] = lines[1].replace(b'"method":"tls"', b'"method":"pgp"')
    write_lines(older, lines)

    status, out = verify(cli, key_file, *rotated_chain)

    assert status == 1
    assert f"FAILED: {older}:2: HMAC does not match" in out


def test_verify_finds_record_deleted_at_file_start(
    cli, key_file: Path, rotated_chain: list[Path]
) -> None:
    second = rotated_chain[1]
    first_lines = read_lines(rotated_chain[0])
    write_lines(second, read_lines(second)[1:])

    status, out = verify(cli, key_file, *rotated_chain)

    assert status == 1
    expected_seq = len(first_lines) + 1
    assert (
        f"{second}:1: seq {expected_seq + 1} follows seq {expected_seq - 1} at "
        f"{rotated_chain[0]}:{len(first_lines)}"
    ) in out


def test_verify_finds_missing_rotated_file(cli, key_file: Path, rotated_chain: list[Path]) -> None:
    remaining = [rotated_chain[0], *rotated_chain[2:]]

    status, out = verify(cli, key_file, *remaining)

    assert status == 1
    assert f"FAILED: {rotated_chain[2]}:1: seq" in out
    assert "are missing here" in out


def test_verify_partial_accepts_archived_start(
    cli, key_file: Path, rotated_chain: list[Path]
) -> None:
    status, out, _ = cli(
        "audit", "verify", "--partial", "--key-file", str(key_file), *map(str, rotated_chain[1:])
    )

    assert status == 0
    assert out.startswith("ok:")


def test_verify_finds_deleted_head(cli, key_file: Path, chain: Path) -> None:
    (chain / "audit.head").unlink()

    status, out = verify(cli, key_file, chain / "audit.jsonl")
    skipped_status, skipped_out, _ = cli(
        "audit", "verify", "--no-head", "--key-file", str(key_file), str(chain / "audit.jsonl")
    )

    assert status == 1
    assert f"FAILED: {chain / 'audit.head'}: missing, so records cut from the end" in out
    assert skipped_status == 0
    assert skipped_out.startswith(f"ok: {RECORDS} records")
    assert "end not compared with a head file" in skipped_out
