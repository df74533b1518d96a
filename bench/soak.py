#!/usr/bin/env python3
"""Soak: a long mixed load on one daemon, reporting memory growth and errors.

For --duration seconds (default 1800), on 127.0.0.1 only:

* a fixture 24.kg page scraped every --scrape-interval seconds, its USD moving every scrape
  and crossing an alert threshold every --swing seconds, so an `above` rule fires and
  resolves and its notifications go to a local webhook receiver;
* --clients threads reading over keep-alive connections: /api/v1/latest, 30-day history,
  /grafana/query, /metrics, /api/v1/sources, the page, a chart and the alert events.

Every --sample seconds the daemon's VmRSS and RssAnon are read from /proc. At the end it
prints requests and errors per endpoint, scrapes by outcome, alert events against the
notifications received, and RSS after warm-up (the first sample past --warmup seconds)
versus the end. It prints figures and asserts nothing; the exit status is 1 only when the
daemon died.

Usage: bench/soak.py [--daemon build-release/somrated] [--duration 1800] [--clients 4]
       [--scrape-interval 2] [--swing 20] [--sample 10] [--warmup 60] [--pause-ms 2]
"""

import argparse
import collections
import http.client
import json
import os
import random
import re
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(HERE, "..", "tests", "integration")
HOST = "127.0.0.1"
TOKEN = "soak-token-0123456789abcdef"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--daemon", default=os.path.join(HERE, "..", "build-release", "somrated"))
    ap.add_argument("--duration", type=float, default=1800, help="seconds of load")
    ap.add_argument("--clients", type=int, default=4, help="reader threads")
    ap.add_argument("--scrape-interval", type=int, default=2, help="seconds between scrapes")
    ap.add_argument("--swing", type=float, default=20, help="seconds between threshold crossings")
    ap.add_argument("--sample", type=float, default=10, help="seconds between RSS samples")
    ap.add_argument("--warmup", type=float, default=60, help="seconds before the RSS baseline")
    ap.add_argument("--pause-ms", type=float, default=2, help="pause per client request")
    return ap.parse_args()


ARGS = parse_args()
# The integration helpers find the binary through this variable when imported.
os.environ["SOMRATED_BINARY"] = os.path.abspath(ARGS.daemon)
os.environ.setdefault("SOMRATED_TEST_DATA", os.path.join(HERE, "..", "tests", "data"))
sys.path.insert(0, INTEGRATION)
from daemon import Daemon  # noqa: E402
from fixture import FixtureServer  # noqa: E402
from receiver import Receiver  # noqa: E402
from test_daemon import seed_page  # noqa: E402


def config(page_url, hook_url):
    return f"""
[storage]
path = "@DB@"

[log]
level = "warning"

[server]
token = "{TOKEN}"

[alerting]
evaluate_every = "5s"

[[source]]
name = "24kg"
kind = "24kg"
url = "{page_url}"
interval = "{ARGS.scrape_interval}s"
timeout = "2s"

[[notifier]]
name = "hook"
kind = "webhook"
url = "{hook_url}"
timeout = "2s"

[[alert]]
name = "usd-high"
currency = "USD"
source = "24kg"
above = "88.00"
notify = ["hook"]
"""


def grafana_body():
    now = time.time()
    frm = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now - 6 * 3600))
    to = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
    return json.dumps({
        "range": {"from": frm, "to": to, "raw": {"from": "now-6h", "to": "now"}},
        "intervalMs": 60000, "maxDataPoints": 500,
        "targets": [{"refId": "A", "target": "USD@24kg"}, {"refId": "B", "target": "EUR@24kg"}],
    })


def requests_mix():
    """(weight, label, method, path, body, headers) of what a client asks."""
    month_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 30 * 86400))
    return [
        (40, "latest", "GET", "/api/v1/latest", None, {}),
        (10, "history", "GET", f"/api/v1/history?currency=USD&from={month_ago}", None, {}),
        (10, "grafana", "POST", "/grafana/query", grafana_body(),
         {"Content-Type": "application/json"}),
        (10, "metrics", "GET", "/metrics", None, {}),
        (10, "sources", "GET", "/api/v1/sources", None, {}),
        (8, "page", "GET", "/", None, {"Accept": "text/html"}),
        (7, "chart", "GET", "/chart/USD.svg?range=30d", None, {}),
        (5, "events", "GET", "/api/v1/alerts/events?limit=50", None, {}),
    ]


class Tally:
    """Requests, errors and first error texts per endpoint, shared by the clients."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = collections.Counter()
        self.errors = collections.Counter()
        self.examples = {}

    def count(self, label, error=None):
        with self.lock:
            if error is None:
                self.ok[label] += 1
            else:
                self.errors[label] += 1
                self.examples.setdefault(label, error)


def client(port, stop, tally, seed):
    rng = random.Random(seed)
    conn = None
    mix = requests_mix()
    weights = [m[0] for m in mix]
    refreshed = time.monotonic()
    while not stop.is_set():
        if time.monotonic() - refreshed > 60:  # keep the Grafana range moving
            mix, refreshed = requests_mix(), time.monotonic()
        _, label, method, path, body, headers = rng.choices(mix, weights)[0]
        try:
            if conn is None:
                conn = http.client.HTTPConnection(HOST, port, timeout=10)
            conn.request(method, path, body=body, headers=headers)
            res = conn.getresponse()
            res.read()
            if res.status in (200, 304):
                tally.count(label)
            else:
                tally.count(label, f"HTTP {res.status}")
            if res.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            tally.count(label, f"{type(e).__name__}: {e}")
            if conn:
                conn.close()
            conn = None
        if ARGS.pause_ms:
            time.sleep(ARGS.pause_ms / 1000)


def rss(pid):
    """(VmRSS, RssAnon) in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                out[key] = int(value.split()[0])
    return out["VmRSS"], out["RssAnon"]


def get_json(port, path):
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        return json.loads(res.read())
    finally:
        conn.close()


def metric_lines(port, name):
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def main():
    path = "/english/"
    hook = Receiver().start()
    with FixtureServer() as fixture:
        fixture.set_page(path, seed_page())
        with Daemon(config(fixture.url(path), hook.url("/hook"))) as d:
            pid = d.proc.pid
            print(f"soak: {ARGS.duration:.0f} s, {ARGS.clients} clients, scrape every "
                  f"{ARGS.scrape_interval} s, threshold crossed every {ARGS.swing:g} s; "
                  f"daemon {ARGS.daemon} (pid {pid})")
            stop = threading.Event()
            tally = Tally()
            threads = [threading.Thread(target=client, args=(d.port, stop, tally, i), daemon=True)
                       for i in range(ARGS.clients)]
            for t in threads:
                t.start()
            start = time.monotonic()
            samples = []  # (seconds, VmRSS, RssAnon)
            next_sample = 0.0
            step = 0
            died = False
            while (elapsed := time.monotonic() - start) < ARGS.duration:
                # USD moves by a cent every scrape and jumps across 88.00 every swing.
                high = int(elapsed // ARGS.swing) % 2 == 1
                cents = step % 50
                usd = f"{(88.10 if high else 87.40) + cents / 100:.2f}"
                eur = f"{99.00 + (step % 97) / 100:.2f}"
                fixture.set_page(path, seed_page(usd=usd, eur=eur))
                step += 1
                if elapsed >= next_sample:
                    if d.proc.poll() is not None:
                        died = True
                        break
                    vm, anon = rss(pid)
                    samples.append((elapsed, vm, anon))
                    next_sample += ARGS.sample
                time.sleep(ARGS.scrape_interval)
            stop.set()
            for t in threads:
                t.join(timeout=15)
            if died or d.proc.poll() is not None:
                print(f"daemon died:\n{d.log_tail()}")
                return 1
            samples.append((time.monotonic() - start, *rss(pid)))
            # Let the last notifications drain before counting.
            time.sleep(min(10, ARGS.scrape_interval * 3))
            events = get_json(d.port, "/api/v1/alerts/events?limit=1000")
            scrapes = metric_lines(d.port, "somrated_scrapes_total")
            deliveries = metric_lines(d.port, "somrated_outbox_deliveries")
            report(tally, samples, events, hook, scrapes, deliveries, d)
            d.stop()
    hook.stop()
    return 0


def db_bytes(path):
    """The database file plus its WAL, in bytes."""
    return sum(os.path.getsize(path + suffix) for suffix in ("", "-wal")
               if os.path.exists(path + suffix))


def report(tally, samples, events, hook, scrapes, deliveries, d):
    total_ok = sum(tally.ok.values())
    total_err = sum(tally.errors.values())
    secs = samples[-1][0]
    print(f"\n{'endpoint':<10} {'requests':>10} {'errors':>7}")
    for label in sorted(set(tally.ok) | set(tally.errors)):
        print(f"{label:<10} {tally.ok[label] + tally.errors[label]:>10} {tally.errors[label]:>7}")
    print(f"{'all':<10} {total_ok + total_err:>10} {total_err:>7}  "
          f"({(total_ok + total_err) / secs:.0f} req/s)")
    for label, text in sorted(tally.examples.items()):
        print(f"  first error on {label}: {text}")

    print("\nscrapes:", ", ".join(
        re.sub(r'^somrated_scrapes_total\{source="24kg",outcome="(\w+)"\} ', r"\1=", s)
        for s in scrapes) or "none")
    print("outbox:", ", ".join(
        re.sub(r'^somrated_outbox_deliveries\{status="(\w+)"\} ', r"\1=", s)
        for s in deliveries) or "none")
    stored = events.get("events", []) if isinstance(events, dict) else []
    ids = {str(e.get("event_id")) for e in stored}
    received = {r.header("X-Somrated-Event-Id") for r in hook.requests("/hook")}
    print(f"alert events stored: {len(stored)} (newest 1000); webhook requests received: "
          f"{len(hook.requests('/hook'))}; stored events not received: {len(ids - received)}")

    base = next((s for s in samples if s[0] >= ARGS.warmup), samples[0])
    end = samples[-1]
    peak = max(s[1] for s in samples)
    print(f"\nRSS after warm-up ({base[0]:.0f} s): {base[1]} KiB (anon {base[2]} KiB)")
    print(f"RSS at the end    ({end[0]:.0f} s): {end[1]} KiB (anon {end[2]} KiB)")
    marks = [samples[min(len(samples) - 1, len(samples) * q // 4)] for q in (1, 2, 3)]
    print("RSS at 1/4, 1/2, 3/4 of the run: "
          + ", ".join(f"{s[1]} KiB ({s[0]:.0f} s)" for s in marks))
    print(f"RSS growth: {end[1] - base[1]:+d} KiB (anon {end[2] - base[2]:+d} KiB); "
          f"peak {peak} KiB; database {db_bytes(d.db) // 1024} KiB with its WAL")
    log_errors = [line for line in d.log().splitlines() if " error " in line.lower()]
    print(f"daemon log lines at error level: {len(log_errors)}")
    for line in log_errors[:5]:
        print("  " + line)


if __name__ == "__main__":
    sys.exit(main())
