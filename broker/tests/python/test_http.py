"""The HTTP side: /health answers 200 while serving, and /metrics is well-formed Prometheus text
whose per-API request counters move when requests are made."""

import re

from helpers import admin, consume, produce_ok, unique

SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{[^}]*\})?\s+'
    r'(?P<value>[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?|[-+]?Inf|NaN)(\s+-?\d+)?$')
COMMENT = re.compile(r'^# (HELP|TYPE|UNIT|EOF)( .*)?$|^# EOF$')


def parse_metrics(text: str) -> list[tuple[str, str, float]]:
    samples = []
    for i, line in enumerate(text.splitlines()):
        if not line:
            continue
        if line.startswith("#"):
            assert COMMENT.match(line), f"line {i + 1}: bad comment {line!r}"
            continue
        m = SAMPLE.match(line)
        assert m, f"line {i + 1}: not a Prometheus sample: {line!r}"
        samples.append((m["name"], m["labels"] or "", float(m["value"])))
    return samples


def produce_request_total(samples) -> float:
    """Sum of the request-count samples labelled with the Produce API (by name or key 0)."""
    total = 0.0
    for name, labels, value in samples:
        if "request" not in name or name.endswith(("_bucket", "_sum")) or "byte" in name:
            continue
        if re.search(r'"(produce|Produce|PRODUCE)"', labels) or re.search(r'api_key="0"', labels):
            total += value
    return total


def test_health(broker):
    status, _ctype, _body = broker.http_get("/health")
    assert status == 200


def test_metrics_format_and_counters(broker):
    topic = unique("metrics")
    produce_ok(broker.bootstrap, topic, [{"value": b"m"}])
    status, ctype, text = broker.http_get("/metrics")
    assert status == 200
    assert ctype.startswith(("text/plain", "application/openmetrics-text")), ctype
    samples = parse_metrics(text)
    assert samples, "no samples in /metrics"
    before = produce_request_total(samples)
    assert before >= 1, "no Produce request counter > 0 after a produce:\n" + text[:3000]
    apis_seen = " ".join(l for _, l, _ in samples)
    for api in ("ApiVersions", "Metadata"):
        assert api.lower() in apis_seen.lower() or api in apis_seen, f"no samples labelled {api}"

    produce_ok(broker.bootstrap, topic, [{"value": b"m%d" % i} for i in range(3)], linger_ms=0,
               batch_num_messages=1)
    consume(broker.bootstrap, topic, range(len(admin(broker.bootstrap).list_topics(timeout=10)
                                               .topics[topic].partitions)), 4)
    _, _, text2 = broker.http_get("/metrics")
    after = produce_request_total(parse_metrics(text2))
    assert after >= before + 1, f"Produce request counter did not move: {before} -> {after}"
