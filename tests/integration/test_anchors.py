"""External anchors against an insider with write access to the store (and, for one attack,
the signing key), on a real S3 server with Object Lock and a real RFC 3161 TSA.

Each attack of issue "completeness that holds against whoever runs the store" is reproduced as
the insider would do it, and must fail verification with its own finding; clean stores
(several processes, forked workers) pass. Plain `verify` is run beside `verify --anchors` to
show what only the anchors catch.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from click.testing import CliRunner, Result

from otel_ai_audit.anchor.publish import Anchorer, published_body
from otel_ai_audit.anchor.s3 import AnchorBucket, AnchorStorageError
from otel_ai_audit.anchor.timestamp import load_certificate_chain
from otel_ai_audit.anchor.verify import AnchorHistory, read_anchor_history
from otel_ai_audit.cli import main
from otel_ai_audit.integrity.chain import Chain
from otel_ai_audit.integrity.checkpoint import Checkpoint
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify.findings import Report
from otel_ai_audit.verify.verifier import Verifier
from tests.audit_fixtures import (
    chain_ids,
    checkpoints,
    decide_in_forked_child,
    delete_chain,
    inference_event,
    rows,
    tamper,
    write_store,
)

# --- set-up --------------------------------------------------------------------------------------


@pytest.fixture
def s3(s3_service: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client of the test S3 server; the same credentials in the environment, where
    the CLI and the runtime read them (boto3's own chain)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_service.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_service.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_service.region)
    return boto3.client("s3", endpoint_url=s3_service.endpoint, region_name=s3_service.region,
                        aws_access_key_id=s3_service.access_key,
                        aws_secret_access_key=s3_service.secret_key,
                        config=Config(s3={"addressing_style": "path"}))


def new_bucket(s3: Any, *, lock: bool = True) -> str:
    name = f"anchors-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
    return name


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def tsa_chain(tsa_service: Any) -> list[Any]:
    return load_certificate_chain(tsa_service.certchain_path)


class Trail:
    """One store, its key and its anchor bucket (a fresh bucket per test)."""

    def __init__(self, path: Path, key: SigningKey, s3: Any, s3_service: Any,
                 tsa_service: Any) -> None:
        self.path = path
        self.key = key
        self.s3 = s3
        self.endpoint = s3_service.endpoint
        self.tsa_url = tsa_service.url
        self.certchain = tsa_service.certchain_path
        self.location = f"s3://{new_bucket(s3)}/trail"
        self.bucket = AnchorBucket(self.location, endpoint_url=self.endpoint, client=s3)

    def anchor(self, *, retention_days: int = 190) -> int | None:
        with AuditStore(self.path) as store:
            result = Anchorer(store, self.key, self.bucket, tsa_url=self.tsa_url,
                              retention_days=retention_days).run()
        assert result.error is None and result.pending == 0, result
        return result.built

    def history(self, tsa_chain: list[Any], **options: Any) -> AnchorHistory:
        with AuditStore(self.path, create=False, readonly=True) as store:
            store_id = store.known_store_id()
        return read_anchor_history(self.bucket, {self.key.key_id: self.key.public_key},
                                   tsa_chain=tsa_chain, store_id=store_id, **options)

    def verify(self, tsa_chain: list[Any] | None = None, *, anchored: bool = True) -> Report:
        history = self.history(tsa_chain) if anchored else None
        with AuditStore(self.path, create=False, readonly=True) as store:
            return Verifier({self.key.key_id: self.key.public_key},
                            anchors=history).verify(store)


@pytest.fixture
def trail(tmp_path: Path, key: SigningKey, s3: Any, s3_service: Any,
          tsa_service: Any) -> Trail:
    return Trail(tmp_path / "audit.db", key, s3, s3_service, tsa_service)


def kinds(report: Report) -> set[tuple[str | None, str]]:
    return {(finding.chain_id, finding.kind.value) for finding in report.findings}


def open_writer(trail: Trail, events: int) -> AuditWriter:
    """A writer that has persisted `events` decisions (checkpoints every 4) and stays open."""
    writer = AuditWriter(str(trail.path), trail.key, checkpoint_every=4,
                         checkpoint_interval=3600.0, flush_interval=3600.0)
    for i in range(events):
        writer.submit(inference_event(i))
    assert writer.flush()
    return writer


def copy_store(source: Path, target: Path) -> None:
    """A consistent copy of a live WAL-mode store (SQLite's backup API), as a cp would be."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        src.close()
        dst.close()


def restore_store(copy: Path, target: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    target.write_bytes(copy.read_bytes())


# --- clean trails pass ---------------------------------------------------------------------------


def test_a_clean_trail_of_several_writers_verifies_against_its_anchors(
        trail: Trail, tsa_chain: list[Any]) -> None:
    first = open_writer(trail, 6)
    assert trail.anchor() == 1
    write_store(trail.path, trail.key, 9)
    for i in range(6, 10):
        first.submit(inference_event(i))
    assert first.close()
    assert trail.anchor() == 2
    assert trail.anchor() is None  # nothing changed since: no new anchor (no new day either)
    report = trail.verify(tsa_chain)
    assert report.findings == [], report.findings
    assert any("anchors: 2 at" in notice for notice in report.notices)
    history = trail.history(tsa_chain)
    assert [a.seq for a in history.anchors] == [1, 2]
    assert history.anchors[0].daily and not history.anchors[1].daily
    assert set(history.witnessed) == set(chain_ids(trail.path))


def test_a_forked_workers_trail_verifies_against_its_anchors(trail: Trail,
                                                            tsa_chain: list[Any]) -> None:
    writer = open_writer(trail, 3)
    decide_in_forked_child(writer, 5)
    assert writer.close()
    trail.anchor()
    assert len(chain_ids(trail.path)) == 2
    assert trail.verify(tsa_chain).findings == []


# --- the insider's attacks -----------------------------------------------------------------------


def test_rollback_to_an_earlier_copy(trail: Trail, tsa_chain: list[Any],
                                     tmp_path: Path) -> None:
    writer = open_writer(trail, 8)
    trail.anchor()
    copy_store(trail.path, tmp_path / "copy.db")
    for i in range(8, 20):
        writer.submit(inference_event(i))
    assert writer.close()
    write_store(trail.path, trail.key, 5)  # the service ran again, and closed again
    trail.anchor()
    (first, second) = sorted(chain_ids(trail.path), key=lambda c: c != writer.chain.chain_id)
    restore_store(tmp_path / "copy.db", trail.path)
    plain = trail.verify(anchored=False)
    assert kinds(plain) == {(first, "chain_not_closed")}  # reads like a crash, nothing more
    assert kinds(trail.verify(tsa_chain)) == {
        (first, "chain_not_closed"), (first, "rolled_back"), (second, "missing_chain")}


def test_a_whole_chain_deleted_with_its_checkpoints(trail: Trail, tsa_chain: list[Any]) -> None:
    write_store(trail.path, trail.key, 6)
    write_store(trail.path, trail.key, 7)
    trail.anchor()
    victim = chain_ids(trail.path)[0]
    delete_chain(trail.path, victim)
    assert trail.verify(anchored=False).findings == []  # without anchors: silence
    assert kinds(trail.verify(tsa_chain)) == {(victim, "missing_chain")}


def test_a_parent_chain_deleted_while_its_forked_child_names_it(
        trail: Trail, tsa_chain: list[Any]) -> None:
    writer = open_writer(trail, 3)
    parent = writer.chain.chain_id
    decide_in_forked_child(writer, 1)
    assert writer.close()
    trail.anchor()
    delete_chain(trail.path, parent)
    # The child's chain_open names its parent: missing even without anchors.
    assert kinds(trail.verify(anchored=False)) == {(parent, "missing_chain")}
    assert kinds(trail.verify(tsa_chain)) == {(parent, "missing_chain")}


def test_tail_cut_together_with_its_checkpoints(trail: Trail, tsa_chain: list[Any]) -> None:
    write_store(trail.path, trail.key, 20)
    trail.anchor()
    (chain,) = chain_ids(trail.path)
    tamper(trail.path, "DELETE FROM records WHERE chain_id = ? AND seq >= 9", (chain,))
    tamper(trail.path, "DELETE FROM checkpoints WHERE chain_id = ? AND size > 9", (chain,))
    assert kinds(trail.verify(anchored=False)) == {(chain, "chain_not_closed")}  # a crash?
    assert kinds(trail.verify(tsa_chain)) == {(chain, "chain_not_closed"),
                                              (chain, "truncated_below_anchor")}


def rewrite_history(path: Path, chain_id: str, key: SigningKey, seq: int) -> None:
    """Change the decision at `seq` and rebuild the whole chain after it, re-signing every
    checkpoint with the real key at its old size and time: what the key holder can do."""
    original = rows(path, chain_id)
    signed = [Checkpoint.from_payload(c.payload) for c in checkpoints(path, chain_id)]
    chain = Chain(chain_id)
    rebuilt, new_checkpoints = [], []
    by_size = {c.size: c for c in signed}
    for row in original:
        record = json.loads(row["data"])
        event = record["event"]
        if record["chain"]["seq"] == seq:
            event["output"]["label"] = not event["output"]["label"]
        rebuilt.append(chain.seal(event, int(record["chain"]["logged"])))
        old = by_size.get(chain.size)
        if old is not None:
            new_checkpoints.append(chain.checkpoint(key, old.issued_at_ns, closed=old.closed,
                                                    counters=old.counters,
                                                    policy_hash=old.policy_hash))
    delete_chain(path, chain_id)
    with AuditStore(path) as store:
        store.write(rebuilt)
        for checkpoint in new_checkpoints:
            store.write([], checkpoint)


def test_history_rewritten_and_re_signed_with_the_real_key(trail: Trail,
                                                          tsa_chain: list[Any]) -> None:
    write_store(trail.path, trail.key, 12)
    trail.anchor()
    (chain,) = chain_ids(trail.path)
    rewrite_history(trail.path, chain, trail.key, 5)
    assert trail.verify(anchored=False).findings == []  # the key holder's rewrite is perfect
    assert kinds(trail.verify(tsa_chain)) == {(chain, "history_rewritten")}


# --- the anchors themselves ----------------------------------------------------------------------


def test_an_anchor_cannot_be_deleted_or_its_retention_shortened(trail: Trail) -> None:
    write_store(trail.path, trail.key, 3)
    trail.anchor()
    (key, versions), = trail.bucket.versions().items()
    bucket = trail.bucket.location.bucket
    with pytest.raises(ClientError):
        trail.s3.delete_object(Bucket=bucket, Key=key, VersionId=versions[0].version_id)
    with pytest.raises(ClientError):
        trail.s3.put_object_retention(
            Bucket=bucket, Key=key, VersionId=versions[0].version_id,
            Retention={"Mode": "COMPLIANCE",
                       "RetainUntilDate": datetime.now(timezone.utc) + timedelta(days=1)},
            BypassGovernanceRetention=True)
    assert trail.bucket.get(key, versions[0].version_id)


def test_an_anchor_written_again_is_reported(trail: Trail, tsa_chain: list[Any]) -> None:
    write_store(trail.path, trail.key, 3)
    trail.anchor()
    (key, _), = trail.bucket.versions().items()
    trail.s3.put_object(Bucket=trail.bucket.location.bucket, Key=key, Body=b"{}")
    assert {f.kind.value for f in trail.verify(tsa_chain).findings} == {"anchor_replaced"}


def test_short_retention_is_reported(trail: Trail, tsa_chain: list[Any]) -> None:
    write_store(trail.path, trail.key, 3)
    trail.anchor(retention_days=2)
    found = trail.verify(tsa_chain).findings
    assert [(f.kind.value, f.seq) for f in found] == [("anchor_retention_short", 1)]


def test_an_anchor_signed_by_another_key_is_unsigned(trail: Trail, tsa_chain: list[Any]) -> None:
    write_store(trail.path, trail.key, 3)
    trail.key, real = SigningKey.generate(), trail.key
    trail.anchor()
    trail.key = real
    found = {f.kind.value for f in trail.verify(tsa_chain).findings}
    assert "anchor_unsigned" in found


def test_a_missing_anchor_is_reported(trail: Trail, tsa_chain: list[Any]) -> None:
    """Anchors 1 and 3 copied to a new prefix without 2 (a locked anchor cannot be deleted:
    this is what a verifier pointed at a doctored copy must say)."""
    for events in (3, 4, 5):
        write_store(trail.path, trail.key, events)
        trail.anchor()
    doctored = AnchorBucket(f"s3://{trail.bucket.location.bucket}/doctored", client=trail.s3)
    with AuditStore(trail.path) as store:
        for anchor in store.anchors():
            if anchor.seq != 2:
                doctored.put(anchor.seq, published_body(anchor),
                             datetime.now(timezone.utc) + timedelta(days=200))
    trail.bucket = doctored
    found = [(f.kind.value, f.seq) for f in trail.verify(tsa_chain).findings]
    assert found == [("anchor_missing", 2)]


def test_an_anchor_without_its_time_stamp_fails_when_stamps_are_checked(
        trail: Trail, tsa_chain: list[Any]) -> None:
    write_store(trail.path, trail.key, 3)
    trail.tsa_url = None
    trail.anchor()
    assert {f.kind.value for f in trail.verify(tsa_chain).findings} == {"anchor_unsigned"}
    unchecked = trail.verify(None)
    assert unchecked.findings == [] and any("--tsa-cert" in n for n in unchecked.notices)


def test_a_bucket_without_object_lock_is_refused_in_one_line(trail: Trail, s3: Any) -> None:
    write_store(trail.path, trail.key, 3)
    trail.key.save(trail.path.parent / "k.key.pem", trail.path.parent / "k.pub.pem")
    plain = new_bucket(s3, lock=False)
    result = cli("anchor", str(trail.path), "--to", f"s3://{plain}/x", "--signing-key",
                 str(trail.path.parent / "k.key.pem"), "--s3-endpoint", trail.endpoint)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "no Object Lock" in result.stderr
    with pytest.raises(AnchorStorageError, match="no Object Lock"):
        AnchorBucket(f"s3://{plain}/x", client=s3).check_object_lock()


# --- command line and runtime --------------------------------------------------------------------


def cli(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output
    return result


def test_cli_anchor_then_verify_with_anchors(trail: Trail) -> None:
    write_store(trail.path, trail.key, 5)
    folder = trail.path.parent
    trail.key.save(folder / "k.key.pem", folder / "k.pub.pem")
    anchored = cli("anchor", str(trail.path), "--to", trail.location, "--signing-key",
                   str(folder / "k.key.pem"), "--tsa-url", trail.tsa_url,
                   "--s3-endpoint", trail.endpoint)
    assert anchored.exit_code == 0, anchored.output
    assert "anchor 1 built; 1 time-stamped, 1 published" in anchored.stdout
    checked = cli("verify", str(trail.path), "--public-key", str(folder / "k.pub.pem"),
                  "--anchors", trail.location, "--s3-endpoint", trail.endpoint,
                  "--tsa-cert", str(trail.certchain))
    assert checked.exit_code == 0, checked.output
    assert "anchors: 1 at" in checked.stdout and "OK" in checked.stdout
    (chain,) = chain_ids(trail.path)
    tamper(trail.path, "DELETE FROM records WHERE chain_id = ? AND seq >= 3", (chain,))
    tamper(trail.path, "DELETE FROM checkpoints WHERE chain_id = ? AND size > 3", (chain,))
    failed = cli("verify", str(trail.path), "--public-key", str(folder / "k.pub.pem"),
                 "--anchors", trail.location, "--s3-endpoint", trail.endpoint, "--json")
    assert failed.exit_code == 1
    assert "truncated_below_anchor" in {f["kind"] for f in json.loads(failed.stdout)["findings"]}


def test_the_runtime_anchors_while_it_runs_and_after_it_closes(
        trail: Trail, tsa_chain: list[Any], tmp_path: Path) -> None:
    """A real process under the runtime, anchoring every second; after it exits, the closing
    checkpoint is anchored and the trail verifies against the anchors."""
    import subprocess
    import sys

    trail.key.save(tmp_path / "k.key.pem", tmp_path / "k.pub.pem")
    script = (
        "import json, time\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "from opentelemetry.sdk.metrics.export import InMemoryMetricReader\n"
        "from otel_ai_audit.runtime import configure\n"
        "from tests.audit_fixtures import inference_event\n"
        "reader = InMemoryMetricReader()\n"
        "runtime = configure(meter_provider=MeterProvider(metric_readers=[reader]))\n"
        "for i in range(30):\n"
        "    runtime.processor.submit_event(inference_event(i))\n"
        "    time.sleep(0.05)\n"
        "time.sleep(1.5)\n"
        "data = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics\n"
        "print(json.dumps({m.name: m.data.data_points[0].value for m in data\n"
        "                  if m.name.startswith('ai_audit.anchor.')}))\n"
    )
    env = {**os.environ,
           "OTEL_AI_AUDIT_STORE": str(trail.path),
           "OTEL_AI_AUDIT_SIGNING_KEY": str(tmp_path / "k.key.pem"),
           "OTEL_AI_AUDIT_ANCHOR_S3": trail.location,
           "OTEL_AI_AUDIT_ANCHOR_S3_ENDPOINT": trail.endpoint,
           "OTEL_AI_AUDIT_ANCHOR_INTERVAL": "1",
           "OTEL_AI_AUDIT_CHECKPOINT_INTERVAL": "0.5",
           "OTEL_AI_AUDIT_TSA_URL": trail.tsa_url}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    observed = json.loads(done.stdout)
    assert observed["ai_audit.anchor.published"] >= 1 and observed["ai_audit.anchor.failures"] == 0
    assert observed["ai_audit.anchor.pending"] == 0 and observed["ai_audit.anchor.age"] < 5
    history = trail.history(tsa_chain)
    assert len(history.anchors) >= 2
    (chain,) = chain_ids(trail.path)
    assert history.witnessed[chain][-1].chain.closed
    assert trail.verify(tsa_chain).findings == []


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("OTEL_AI_AUDIT_ANCHOR") or name == "OTEL_AI_AUDIT_TSA_URL":
            monkeypatch.delenv(name)
    yield


# --- outages -------------------------------------------------------------------------------------

OUTAGE_APP = """
import sys, time
from otel_ai_audit.runtime import configure
from tests.audit_fixtures import inference_event
runtime = configure()
deadline = time.monotonic() + float(sys.argv[1])
made = 0
while time.monotonic() < deadline:
    runtime.processor.submit_event(inference_event(made))
    made += 1
    time.sleep(0.005)
print(made, flush=True)
"""


@pytest.mark.parametrize("down", ["s3", "tsa"])
def test_anchoring_resumes_after_an_outage_and_nothing_is_missing(
        down: str, tmp_path: Path, key: SigningKey, s3: Any, tsa_service: Any) -> None:
    """S3 stopped (then restarted on its port and data), or the TSA frozen (SIGSTOP, so
    requests hang until their timeout), while a process decides and anchors every 0.5 s.
    Anchors built meanwhile wait in the outbox; afterwards every one is published, in order,
    and the trail verifies against them."""
    import signal
    import subprocess
    import sys
    import threading
    import time

    from tests.services.s3 import S3Service
    from tests.services.tsa import TimestampAuthorityService

    own_s3 = S3Service(tmp_path / "s3").start()
    own_tsa = TimestampAuthorityService(tmp_path / "tsa").start()
    try:
        client = boto3.client("s3", endpoint_url=own_s3.endpoint, region_name=own_s3.region,
                              aws_access_key_id=own_s3.access_key,
                              aws_secret_access_key=own_s3.secret_key,
                              config=Config(s3={"addressing_style": "path"}))
        location = f"s3://{new_bucket(client)}/trail"
        key.save(tmp_path / "k.key.pem", tmp_path / "k.pub.pem")
        env = {**os.environ,
               "AWS_ACCESS_KEY_ID": own_s3.access_key,
               "AWS_SECRET_ACCESS_KEY": own_s3.secret_key,
               "OTEL_AI_AUDIT_STORE": str(tmp_path / "audit.db"),
               "OTEL_AI_AUDIT_SIGNING_KEY": str(tmp_path / "k.key.pem"),
               "OTEL_AI_AUDIT_ANCHOR_S3": location,
               "OTEL_AI_AUDIT_ANCHOR_S3_ENDPOINT": own_s3.endpoint,
               "OTEL_AI_AUDIT_ANCHOR_INTERVAL": "0.5",
               "OTEL_AI_AUDIT_CHECKPOINT_INTERVAL": "0.3",
               "OTEL_AI_AUDIT_TSA_URL": own_tsa.url}
        # A frozen TSA is only a failure once a request times out (10 s): a longer outage.
        seconds = 8 if down == "s3" else 17
        app = subprocess.Popen([sys.executable, "-c", OUTAGE_APP, str(seconds)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=Path(__file__).resolve().parents[2])

        def outage() -> None:
            time.sleep(2.0)
            if down == "s3":
                own_s3.stop()
                time.sleep(5.0)  # longer than boto3's own retries
                own_s3.start()
            else:
                assert own_tsa.process is not None and own_tsa.process.process is not None
                pid = own_tsa.process.process.pid
                os.kill(pid, signal.SIGSTOP)
                time.sleep(12.0)
                os.kill(pid, signal.SIGCONT)

        thread = threading.Thread(target=outage)
        thread.start()
        out, err = app.communicate(timeout=180)
        thread.join()
        assert app.returncode == 0, err
        assert int(out.split()[0]) > 100, out
        assert err.count("anchoring failed") == 1 and err.count("anchoring resumed") == 1, err
        bucket = AnchorBucket(location, endpoint_url=own_s3.endpoint, client=client)
        with AuditStore(tmp_path / "audit.db", create=False, readonly=True) as store:
            assert store.unpublished_anchors(str(bucket.location)) == []
            outbox = [anchor.seq for anchor in store.anchors()]
            store_id = store.known_store_id()
        history = read_anchor_history(bucket, {key.key_id: key.public_key},
                                      tsa_chain=load_certificate_chain(own_tsa.certchain_path),
                                      store_id=store_id)
        assert [anchor.seq for anchor in history.anchors] == outbox and len(outbox) >= 4
        with AuditStore(tmp_path / "audit.db", create=False, readonly=True) as store:
            report = Verifier({key.key_id: key.public_key}, anchors=history).verify(store)
        assert report.findings == []
        (chain,) = history.witnessed
        assert history.witnessed[chain][-1].chain.closed
    finally:
        own_s3.stop()
        own_tsa.stop()


def test_a_trail_whose_key_was_rotated_verifies_against_its_anchors(
        trail: Trail, tsa_chain: list[Any]) -> None:
    """Anchors signed before the rotation by the old key, after it by the new one: trusting
    both (a trust file), the trail and its anchors verify."""
    writer = open_writer(trail, 5)
    trail.anchor()
    rotated = SigningKey.generate()
    writer.rotate_key(rotated)
    for i in range(5, 9):
        writer.submit(inference_event(i))
    assert writer.close()
    old, trail.key = trail.key, rotated
    trail.anchor()
    history = read_anchor_history(trail.bucket, {old.key_id: old.public_key,
                                                 rotated.key_id: rotated.public_key},
                                  tsa_chain=tsa_chain)
    assert history.findings == [] and {a.key_id for a in history.anchors} == {
        old.key_id, rotated.key_id}
    with AuditStore(trail.path, create=False, readonly=True) as store:
        report = Verifier({old.key_id: old.public_key}, anchors=history).verify(store)
    assert report.findings == []


def test_a_chain_deleted_in_elasticsearch_is_missing_against_the_anchors(
        trail: Trail, tsa_chain: list[Any], elasticsearch: Any) -> None:
    """`verify --elasticsearch ... --anchors`: the trail shipped to Elasticsearch, one chain's
    documents deleted there; without anchors the rest verifies, with them the chain is
    missing."""
    from elasticsearch import Elasticsearch

    from otel_ai_audit.backends.elasticsearch.layout import index_names
    from otel_ai_audit.backends.elasticsearch.sink import ElasticsearchSink
    from otel_ai_audit.sinks import Shipper

    write_store(trail.path, trail.key, 6)
    write_store(trail.path, trail.key, 7)
    trail.anchor()
    prefix = f"anchored-{uuid.uuid4().hex[:8]}"
    shipper = Shipper(str(trail.path), ElasticsearchSink(Elasticsearch(elasticsearch.url),
                                                         index_prefix=prefix))
    assert shipper.drain(timeout=60)
    shipper.close()
    victim = chain_ids(trail.path)[0]
    client = Elasticsearch(elasticsearch.url)
    for index in index_names(prefix)[:2]:
        client.indices.refresh(index=index)
        hits = client.search(index=index, query={"term": {"chain.id": victim}}, size=100)
        for hit in hits["hits"]["hits"]:
            client.delete(index=hit["_index"], id=hit["_id"], refresh=True)
    client.close()
    folder = trail.path.parent
    (folder / "k.pub.pem").write_text(trail.key.public_pem)
    common = ["verify", "--elasticsearch", elasticsearch.url, "--index-prefix", prefix,
              "--public-key", str(folder / "k.pub.pem"), "--json"]
    assert cli(*common).exit_code == 0
    anchored = cli(*common, "--anchors", trail.location, "--s3-endpoint", trail.endpoint,
                   "--tsa-cert", str(trail.certchain))
    assert anchored.exit_code == 1
    assert [(f["chain_id"], f["kind"]) for f in json.loads(anchored.stdout)["findings"]] == [
        (victim, "missing_chain")]
