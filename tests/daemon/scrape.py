"""Scrape a p2pb metrics endpoint and parse it with the Prometheus
project's own OpenMetrics parser (Debian's python3-prometheus-client),
which rejects anything malformed. Prints the samples as JSON lines:
{"name", "labels", "value"}; exits non-zero on a parse error."""
import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    kind = r.headers.get("Content-Type", "")
    if not kind.startswith("application/openmetrics-text"):
        sys.exit(f"unexpected Content-Type: {kind!r}")
    text = r.read().decode("utf-8")
for family in text_string_to_metric_families(text):
    for s in family.samples:
        print(json.dumps({"name": s.name, "labels": s.labels, "value": s.value}))
