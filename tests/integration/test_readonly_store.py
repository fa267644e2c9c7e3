"""A store as an auditor receives it: on read-only media. `verify`, `prove` and `evidence` read
it without writing next to it, whether it is a closed store (the write-ahead log folded in) or
a live one copied with its `-wal` file (and no `-shm`).

The media is a real read-only bind mount (root ignores file permissions, so chmod would prove
nothing here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from otel_ai_audit.cli import main
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from tests.audit_fixtures import inference_event, write_store


@pytest.fixture
def readonly_folder(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(source, view): files put in `source` appear read-only at `view`."""
    source, view = tmp_path / "source", tmp_path / "view"
    source.mkdir()
    view.mkdir()
    steps = [["mount", "--bind", str(source), str(view)],
             ["mount", "-o", "remount,bind,ro", str(view)]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", str(view)], check=False, capture_output=True)
            if os.environ.get("CI") == "true":
                pytest.fail(f"cannot make a read-only bind mount: {done.stderr}")
            pytest.skip(f"cannot make a read-only bind mount (needs root): {done.stderr}")
    try:
        yield source, view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


def cli(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


def check_readonly(view: Path, key_file: Path, out: Path) -> None:
    before = sorted(os.listdir(view))
    store = view / "audit.db"
    verified = cli("verify", str(store), "--public-key", str(key_file), "--json")
    assert verified.exit_code in (0, 1), verified.output
    report = json.loads(verified.stdout)
    assert report["records"] > 0
    record_id = json.loads((view / "first-id.json").read_text())
    proved = cli("prove", str(store), record_id, "--out", str(out / "proof.json"))
    assert proved.exit_code == 0, proved.output
    checked = cli("verify-proof", str(out / "proof.json"), "--public-key", str(key_file))
    assert checked.exit_code == 0, checked.output
    bundle = cli("evidence", str(store), "--system", "unknown_service", "--from",
                 "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z", "--out",
                 str(out / "bundle"), "--signing-key", str(out / "officer.key.pem"),
                 "--public-key", str(key_file))
    assert bundle.exit_code in (0, 1), bundle.output
    assert (out / "bundle" / "manifest.json").is_file()
    assert sorted(os.listdir(view)) == before, "something was written beside the store"


def prepare(source: Path, tmp_path: Path) -> tuple[SigningKey, Path, Path]:
    key = SigningKey.generate()
    key.save(tmp_path / "k.key.pem", tmp_path / "k.pub.pem")
    out = tmp_path / "out"
    out.mkdir()
    SigningKey.generate().save(out / "officer.key.pem", out / "officer.pub.pem")
    return key, tmp_path / "k.pub.pem", out


def first_record_id(store: Path) -> str:
    import sqlite3

    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        return str(db.execute("SELECT record_id FROM records WHERE seq = 1").fetchone()[0])


def test_a_closed_store_on_readonly_media(readonly_folder: tuple[Path, Path],
                                          tmp_path: Path) -> None:
    source, view = readonly_folder
    key, public, out = prepare(source, tmp_path)
    write_store(source / "audit.db", key, 12)
    assert not (source / "audit.db-wal").exists()  # folded in when the writer closed
    (source / "first-id.json").write_text(json.dumps(first_record_id(source / "audit.db")))
    for name in ("audit.db-wal", "audit.db-shm"):  # what reading the id just left
        (source / name).unlink(missing_ok=True)
    check_readonly(view, public, out)


def test_a_live_store_copied_with_its_write_ahead_log(readonly_folder: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    """The writer is still running: its latest records are only in the -wal file."""
    source, view = readonly_folder
    key, public, out = prepare(source, tmp_path)
    live = tmp_path / "live"
    live.mkdir()
    writer = AuditWriter(str(live / "audit.db"), key, checkpoint_every=5,
                         checkpoint_interval=3600.0, flush_interval=3600.0)  # signs all 10
    for i in range(9):
        writer.submit(inference_event(i))
    assert writer.flush()
    assert (live / "audit.db-wal").stat().st_size > 0
    for name in ("audit.db", "audit.db-wal"):  # as a backup tool copies it, without -shm
        shutil.copyfile(live / name, source / name)
    (source / "first-id.json").write_text(json.dumps(first_record_id(live / "audit.db")))
    check_readonly(view, public, out)
    report = json.loads(cli("verify", str(view / "audit.db"), "--public-key", str(public),
                            "--json").stdout)
    assert report["records"] == 10  # the chain_open and nine decisions, read from the -wal
    assert [f["kind"] for f in report["findings"]] == ["chain_not_closed"]
    writer.close()
