"""`python -m tests.services prepare|up|down`: the services behind `make services`.

`up` starts the same Elasticsearch, Collector, S3 server with Object Lock, time-stamping
authority and Kafka broker the tests use, detached, on loopback, and writes their addresses to
`.services.env` as shell `KEY=value` lines; `down` stops them and deletes the Elasticsearch, S3,
TSA and Kafka data.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from tests.services.base import REPO_ROOT, ServiceStartError, read_pid, stop_process_group
from tests.services.chromium import chromium_binary
from tests.services.collector import CollectorService, collector_binary
from tests.services.elasticsearch import ElasticsearchService, distribution_home
from tests.services.kafka import KafkaService, kafka_libs
from tests.services.s3 import S3Service, versitygw_binary
from tests.services.tsa import TimestampAuthorityService, timestamp_server_binary

STATE_DIR = REPO_ROOT / ".services"
ENV_FILE = REPO_ROOT / ".services.env"

Service = (ElasticsearchService | CollectorService | S3Service | TimestampAuthorityService
           | KafkaService)


def prepare() -> None:
    print(f"Elasticsearch distribution: {distribution_home()}", file=sys.stderr)
    print(f"Collector binary: {collector_binary()}", file=sys.stderr)
    print(f"Chromium: {chromium_binary()}", file=sys.stderr)
    print(f"versitygw binary: {versitygw_binary()}", file=sys.stderr)
    print(f"timestamp-server binary: {timestamp_server_binary()}", file=sys.stderr)
    print(f"Kafka jars: {kafka_libs()}", file=sys.stderr)


def up() -> None:
    down(quiet=True)
    STATE_DIR.mkdir(exist_ok=True)
    elasticsearch = ElasticsearchService()
    collector = CollectorService(STATE_DIR / "collector")
    s3 = S3Service(STATE_DIR / "s3")
    tsa = TimestampAuthorityService(STATE_DIR / "tsa")
    kafka = KafkaService(STATE_DIR / "kafka")
    services: list[Service] = [elasticsearch, collector, s3, tsa, kafka]
    try:
        for service in services:
            service.start()
    except BaseException:
        for service in services:  # stop() is a no-op on one that never started
            service.stop()
        raise
    env = {key: value for service in services for key, value in service.env().items()}
    ENV_FILE.write_text("".join(f"{key}={value}\n" for key, value in sorted(env.items())))
    pid_files = [str(p.pid_path) for p in elasticsearch.processes]
    pid_files += [str(service.process.pid_path) for service in (collector, s3, tsa, kafka)]
    data_dirs = [str(elasticsearch.workdir), str(s3.workdir), str(tsa.workdir),
                 str(kafka.workdir)]
    state = {"pid_files": pid_files, "data_dirs": data_dirs}
    (STATE_DIR / "state.json").write_text(json.dumps(state, indent=2))
    print(ENV_FILE.read_text(), end="")
    print(f"written to {ENV_FILE}; stop with `make services-down`", file=sys.stderr)


def down(quiet: bool = False) -> None:
    state_file = STATE_DIR / "state.json"
    if not state_file.exists():
        if not quiet:
            print("no services running", file=sys.stderr)
        return
    state = json.loads(state_file.read_text())
    for pid_file in state["pid_files"]:
        pid = read_pid(Path(pid_file))
        if pid is not None:
            stop_process_group(pid)
        Path(pid_file).unlink(missing_ok=True)
    for data_dir in state.get("data_dirs", []):
        shutil.rmtree(data_dir, ignore_errors=True)
    state_file.unlink()
    ENV_FILE.unlink(missing_ok=True)
    if not quiet:
        print("services stopped", file=sys.stderr)


def main(argv: list[str]) -> int:
    commands = {"prepare": prepare, "up": up, "down": down}
    if len(argv) != 1 or argv[0] not in commands:
        print("usage: python -m tests.services prepare|up|down", file=sys.stderr)
        return 2
    try:
        commands[argv[0]]()
    except ServiceStartError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
