"""A disk that fills up under the store, for real: a small tmpfs mounted for the test.

The app scores single rows in a loop while the store's disk fills. The log must name the real
cause once ("disk full (errno 28)"), nothing may be lost silently, and when space returns (the
test deletes a filler file) the chain continues and closes by itself. With the `block` policy
nothing is lost at all; with `spill` the spill file on the same full disk fails, and what it
lost is counted in the signed checkpoints, so `verify` fails with `decisions_lost`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from otel_ai_audit.cli import main
from otel_ai_audit.integrity.keys import SigningKey

ROOT = Path(__file__).resolve().parents[2]
APP = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    import otel_ai_audit
    from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor

    rng = np.random.default_rng(7)
    model = LogisticRegression().fit(rng.normal(size=(300, 4)), rng.integers(0, 2, 300))
    otel_ai_audit.configure(store=os.environ["STORE"], signing_key=os.environ["KEY"],
                            durability="async", max_queue=200,
                            queue_full_policy=os.environ["POLICY"], checkpoint_interval=0.5)
    SklearnInstrumentor().instrument()
    rows = rng.normal(size=(5000, 4))
    for row in rows:
        model.predict(row[None, :])
    print(f"DONE {len(rows)}", flush=True)
""")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs at `tmp_path/disk` (root needed to mount)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs for the full-disk test: {mounted.stderr}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.parametrize("policy", ["block", "spill"])
def test_a_full_disk_is_named_recovers_and_loses_nothing_silently(
        small_disk: Path, tmp_path: Path, policy: str) -> None:
    key = SigningKey.generate()
    key.save(tmp_path / "k.key.pem", tmp_path / "k.pub.pem")
    filler = small_disk / "filler"
    # Leaves about 512 KiB for the store: it fills after a few hundred decisions. When the
    # filler goes, the 5,000 decisions (about 5 MB, twice while the write-ahead log is copied
    # back into the database) fit.
    filler.write_bytes(b"\0" * (24 * 1024 * 1024 - 512 * 1024))
    script = tmp_path / "app.py"
    script.write_text(APP)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
           "STORE": str(small_disk / "audit.db"), "KEY": str(tmp_path / "k.key.pem"),
           "POLICY": policy, "PYTHONPATH": str(ROOT)}
    app = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    assert app.stderr is not None
    log: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the writer says the disk is full
        line = app.stderr.readline()
        if not line:
            break
        log.append(line)
        if "disk full" in line:
            break
    assert any("disk full (errno 28" in line for line in log), "".join(log)
    time.sleep(1.0)  # the writer keeps retrying meanwhile: without a tight loop
    filler.unlink()  # space returns
    out, err = app.communicate(timeout=180)
    log.append(err)
    text = "".join(log)
    assert app.returncode == 0, text
    assert "DONE 5000" in out
    assert text.count("disk full (errno 28") == 1, text  # named once, not at every retry
    assert "succeeded again" in text
    assert "Traceback" not in text
    result = CliRunner().invoke(main, ["verify", str(small_disk / "audit.db"), "--public-key",
                                       str(tmp_path / "k.pub.pem"), "--json"])
    report = json.loads(result.stdout)
    kinds = [finding["kind"] for finding in report["findings"]]
    records = report["records"]  # the chain_open record, then one per decision
    if policy == "block":
        assert result.exit_code == 0 and kinds == [], report["findings"]
        assert records == 1 + 5000
    else:
        assert result.exit_code == 1 and kinds == ["decisions_lost"], report["findings"]
        lost = int(report["findings"][0]["detail"].split(" signs ")[1].split()[0])
        assert "spill:" in report["findings"][0]["detail"]
        assert records - 1 + lost == 5000  # every decision is either chained or counted
