#!/usr/bin/env python3
"""Reads a Kafka topic from the start with a third-party client (kafka-python) and prints, per
record: partition, offset, key, headers and value length. It also checks that each keyed
record sits on the partition the Java client's murmur2 partitioner would choose (kafka-python's
DefaultPartitioner implements the same rule), so producers in other languages agree with ours.

Usage: scripts/read-events.py [--brokers 127.0.0.1:9092] [--topic catalog.product-events]
       (defaults from KAFKA_BROKERS / KAFKA_TOPIC). Runs itself in <repo>/.venv, creating it
       and installing kafka-python if needed. Exit code 1 if a record is on the wrong partition.
"""
import argparse
import os
import subprocess
import sys
import venv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(REPO, ".venv")
VENV_PY = os.path.join(VENV, "bin", "python")
KAFKA_PYTHON = "kafka-python==3.0.12"


def ensure_venv():
    """Re-executes this script with the repo venv's python, with kafka-python installed."""
    if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        if not os.path.exists(VENV_PY):
            venv.create(VENV, with_pip=True)
        os.execv(VENV_PY, [VENV_PY, os.path.abspath(__file__)] + sys.argv[1:])
    try:
        import kafka  # noqa: F401
    except ImportError:
        subprocess.check_call(
            [sys.executable, "-m", "pip", "install", "--quiet", KAFKA_PYTHON],
            stdout=subprocess.DEVNULL,
        )


def show(b, limit=60):
    if b is None:
        return "null"
    try:
        s = b.decode("utf-8")
        if s.isprintable():
            return repr(s if len(s) <= limit else s[:limit] + "...")
    except UnicodeDecodeError:
        pass
    return "0x" + b[:limit].hex()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brokers", default=os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092"))
    ap.add_argument("--topic", default=os.environ.get("KAFKA_TOPIC", "catalog.product-events"))
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the broker")
    ap.add_argument("--idle", type=float, default=2.0,
                    help="stop after this many seconds without a new record")
    args = ap.parse_args()

    from kafka import KafkaConsumer, TopicPartition
    from kafka.partitioner.default import murmur2

    consumer = KafkaConsumer(
        bootstrap_servers=args.brokers.split(","),
        enable_auto_commit=False,
        group_id=None,
        request_timeout_ms=int(args.timeout * 1000) + 1000,
    )
    partitions = consumer.partitions_for_topic(args.topic)
    if not partitions:
        print(f"topic {args.topic!r} not found", file=sys.stderr)
        return 2
    tps = [TopicPartition(args.topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    # Read until the topic has been quiet for --idle seconds. (Not up to end_offsets(): tansu
    # 0.6.0 answers ListOffsets(latest) with the newest batch's base offset + 1, which stops
    # short of the end when a batch holds several records.)
    count, misplaced = 0, 0
    while True:
        polled = consumer.poll(timeout_ms=int(args.idle * 1000))
        if not polled:
            break
        for tp, records in polled.items():
            for r in records:
                count += 1
                expected = (murmur2(r.key) & 0x7FFFFFFF) % len(partitions) if r.key is not None else None
                flag = ""
                if expected is not None and expected != r.partition:
                    misplaced += 1
                    flag = f"  !! murmur2 partition is {expected}"
                headers = ", ".join(f"{k}={show(v, 40)}" for k, v in r.headers)
                print(f"p{r.partition}@{r.offset} key={show(r.key)} value_len="
                      f"{len(r.value) if r.value is not None else 'null'} headers[{headers}]{flag}")
    consumer.close()
    print(f"{count} records in {len(partitions)} partitions; {misplaced} on a non-murmur2 partition")
    return 1 if misplaced else 0


if __name__ == "__main__":
    ensure_venv()
    sys.exit(main())
