"""A fleet of model-server processes for the fleet tests: each replica a real instrumented
scikit-learn model deciding in its own process, with its own store and its own signing key (as
replicas with their own secrets would have), shipping its trail where its `OTEL_AI_AUDIT_*`
variables say, as a deployed application does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from otel_ai_audit.integrity.keys import SigningKey

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = 8
DECISIONS = 10_000
RECORDS = PROCESSES * (DECISIONS + 1)
"""Each chain: its chain_open record and the decisions."""
BATCH = 10
"""Rows a predict() call scores: 1,000 calls a process, each sealing 10 decisions."""
APP = textwrap.dedent("""
    import os, sys
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    import otel_ai_audit

    decisions, batch = int(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(os.getpid())
    features = rng.normal(size=(500, 4))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    # Instruments scikit-learn too, and ships where the OTEL_AI_AUDIT_* variables say.
    audit = otel_ai_audit.configure(store=os.environ["STORE"], signing_key=os.environ["KEY"])
    assert audit.shippers, "no destination in the OTEL_AI_AUDIT_* variables"
    for rows in np.array_split(rng.normal(size=(decisions, 4)), decisions // batch):
        model.predict(rows)
    # As runtime.shutdown() does, but the exit status says whether everything was delivered.
    audit.writer.close()
    sys.exit(0 if all(shipper.close(timeout=300) for shipper in audit.shippers) else 1)
""")


def replica_folders(tmp_path: Path) -> list[Path]:
    """A folder for each of the `PROCESSES` replicas, holding its signing key (k.key.pem) and
    public key (k.pub.pem), made before anything starts so that a gateway can trust them."""
    folders = []
    for replica in range(PROCESSES):
        folder = tmp_path / f"replica{replica}"
        folder.mkdir()
        SigningKey.generate().save(folder / "k.key.pem", folder / "k.pub.pem")
        folders.append(folder)
    return folders


def public_keys(folders: list[Path]) -> list[Path]:
    return [folder / "k.pub.pem" for folder in folders]


def public_key_arguments(folders: list[Path]) -> list[str]:
    """`--public-key K` for each replica's key, for `otel-ai-audit verify`."""
    return [argument for key in public_keys(folders) for argument in ("--public-key", str(key))]


def launch(argv: list[str], log: Path, **options: Any) -> subprocess.Popen[bytes]:
    """Start `argv` with its output in the file `log` (a pipe nobody drains meanwhile could
    fill and block it)."""
    with open(log, "wb") as output:
        return subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, **options)


def succeeded(process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    process.wait(timeout=timeout)
    assert process.returncode == 0, log.read_text(errors="replace")[-3000:]


def run_replicas(folders: list[Path], destination: Mapping[str, str]) -> None:
    """Run the fleet to its end, every replica at once: `DECISIONS` decisions each, shipped to
    `destination` (`OTEL_AI_AUDIT_*` variables); each must exit 0, i.e. have delivered its
    whole trail, closing checkpoint included."""
    script = folders[0].parent / "replica.py"
    script.write_text(APP)
    base = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "PYTHONPATH": str(ROOT), "OTEL_TRACES_EXPORTER": "none", **destination}
    replicas = [launch([sys.executable, str(script), str(DECISIONS), str(BATCH)],
                       folder / "replica.log", cwd=folder,
                       env={**base, "STORE": str(folder / "audit.db"),
                            "KEY": str(folder / "k.key.pem")})
                for folder in folders]
    for folder, process in zip(folders, replicas, strict=True):
        succeeded(process, folder / "replica.log", timeout=900)
