"""The HTTP side: /health answers 200 while serving, /ready 200 with nothing under-replicated, and
/metrics is well-formed Prometheus text whose per-API request counters move when requests are
made."""

import json
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


def test_a_single_node_is_ready_and_reports_no_replication_trouble(broker):
    """One broker is its own ISR: /ready is 200 (JSON) and the replication gauges are zero. The
    cluster cases are in test_replication_health.py."""
    topic = unique("ready")
    produce_ok(broker.bootstrap, topic, [{"value": b"x"}])
    status, ctype, body = broker.http_get("/ready")
    assert (status, ctype) == (200, "application/json"), body
    assert json.loads(body) == {"ready": True, "shutting_down": False, "unfenced": True,
                                "under_replicated_count": 0, "under_replicated": []}
    samples = {name: value for name, _, value in parse_metrics(broker.http_get("/metrics")[2])}
    for name in ("fjord_replication_under_replicated_partitions", "fjord_replication_offline_partitions",
                 "fjord_replication_under_min_isr_partitions", "fjord_replication_isr_shrinks_total"):
        assert samples[name] == 0, name


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


def test_real_prometheus_scrapes_and_queries_the_broker(broker, tmp_path):
    """A real Prometheus server (Debian's, installed by scripts/test.sh) scrapes /metrics with its
    own OpenMetrics parser: the target is up and per-API series are queryable."""
    import json
    import shutil
    import socket
    import subprocess
    import urllib.parse
    import urllib.request

    from helpers import wait_until

    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus is not installed (scripts/test.sh installs it with apt)"
    produce_ok(broker.bootstrap, unique("prom"), [{"value": b"p"}])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = broker.http.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: fjord\n    static_configs:\n      - targets: ['{target}']\n")
    proc = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))
    try:
        def query(expr):
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    return json.load(r)["data"]["result"]
            except OSError:
                return []

        up = wait_until(lambda: query('up{job="fjord"}'), 30, "prometheus scraped the broker")
        assert up[0]["value"][1] == "1", (up, (tmp_path / "prometheus.log").read_text()[-2000:])
        series = wait_until(lambda: query('fjord_network_requests_total{api="Produce"}'), 30,
                            "produce request counter queryable")
        assert float(series[0]["value"][1]) >= 1
        assert query("fjord_storage_fsync_duration_seconds_count"), "fsync histogram missing"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
