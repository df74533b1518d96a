#!/usr/bin/env python3
"""Side-by-side benchmark of somrated against nginx and Prometheus on the same machine.

One run, loopback only (127.0.0.1), figures printed, nothing asserted:

* GET /api/v1/latest: somrated versus nginx serving the same JSON bytes as a static file,
  both driven by wrk with the same threads, connections and duration.
* A 1-year history at <= 1000 points: somrated's /api/v1/history and /grafana/query versus
  Prometheus' query_range over the same series, backfilled with
  `promtool tsdb create-blocks-from openmetrics`; RSS (VmRSS) of each process after the
  queries and bytes on disk (the TSDB directory versus the SQLite database).

The data is the real cadence: a few changes a day per currency. somrated stores change
points (imported with `somrated import`); Prometheus stores what an exporter scraped every
--scrape-interval seconds would give it, a sample per scrape.

Usage: bench/compare.py --daemon build-release/somrated [--years 1] [--changes-per-day 4]
       [--scrape-interval 60] [--duration 10] [--connections 50] [--threads 2]
       [--history-duration 10] [--nginx-workers 1,auto] [--dir /tmp/somrated-compare]
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from urllib.parse import urlencode

HOST = "127.0.0.1"
CURRENCIES = (("USD", Decimal("87.45")), ("EUR", Decimal("99.56")), ("RUB", Decimal("1.10")))
SOURCE = "24kg"


def free_port():
    """A free loopback port (the server binds it right after; fine for a benchmark)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rfc3339(t):
    """Unix seconds as RFC 3339 UTC."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate(args, csv_path, om_path, end):
    """Writes the same series as a somrated import CSV (change points) and an OpenMetrics
    file (a sample per scrape). Returns (change points, samples)."""
    rng = random.Random(42)
    start = end - args.years * 365 * 86400
    mean_gap = 86400 / args.changes_per_day
    changes = {}
    for code, rate in CURRENCIES:
        points, t = [], start
        step = Decimal("0.01")
        while t < end:
            points.append((t, rate))
            t += max(60, int(rng.expovariate(1 / mean_gap)))
            rate = rate + step if rng.random() < 0.5 else rate - step
            if rate < Decimal("0.50"):
                rate += 2 * step
        changes[code] = points
    n_changes = sum(len(p) for p in changes.values())
    with open(csv_path, "w", encoding="ascii") as f:
        f.write("source,currency,since,rate\n")
        for code, points in changes.items():
            for t, rate in points:
                f.write(f"{SOURCE},{code},{rfc3339(t)},{rate}\n")
    samples = 0
    with open(om_path, "w", encoding="ascii") as f:
        f.write("# HELP somrated_rate Exchange rate in som.\n# TYPE somrated_rate gauge\n")
        for code, points in changes.items():
            i = 0
            label = f'somrated_rate{{source="{SOURCE}",currency="{code}"}}'
            for t in range(start, end, args.scrape_interval):
                while i + 1 < len(points) and points[i + 1][0] <= t:
                    i += 1
                f.write(f"{label} {points[i][1]} {t}\n")
                samples += 1
        f.write("# EOF\n")
    return n_changes, samples


def wait_http(port, path, proc, timeout=120):
    """Polls GET path until it answers 200 or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"compare: {proc.args[0]} exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection(HOST, port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"compare: {proc.args[0]} did not answer {path} in {timeout} s")


def fetch(port, method, path, body=None):
    """One request; returns the body bytes, exits on a non-200 answer."""
    c = http.client.HTTPConnection(HOST, port, timeout=60)
    c.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        sys.exit(f"compare: {method} {path} -> {r.status}: {data[:200]!r}")
    return data


def latencies(args, port, method, path, body=None):
    """One wrk connection sending the request back to back for --history-duration seconds,
    so the client's own cost per request is wrk's (small) rather than Python's; returns
    (median ms, p99 ms, requests, non-2xx count)."""
    cmd = ["wrk", "-t1", "-c1", f"-d{args.history_duration}s", "--latency"]
    script = None
    if method != "GET":
        script = os.path.join(args.dir, "request.lua")
        with open(script, "w", encoding="utf-8") as f:
            f.write(f'wrk.method = "{method}"\nwrk.body = {lua_string(body.decode())}\n'
                    'wrk.headers["Content-Type"] = "application/json"\n')
        cmd += ["-s", script]
    out = subprocess.run(cmd + [f"http://{HOST}:{port}{path}"], check=True, capture_output=True,
                         text=True).stdout
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    count = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return p50, p99, count, int(bad.group(1)) if bad else 0


def lua_string(text):
    """text as a Lua long-bracket string literal."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def vmrss(pid, field="VmRSS"):
    """VmRSS (or another /proc/PID/status field) of a process in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def tree_rss(pid, field="VmRSS"):
    """VmRSS of a process plus its children (nginx's master and workers), in KiB."""
    total = vmrss(pid, field)
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            for child in f.read().split():
                total += tree_rss(int(child), field)
    except OSError:
        pass
    return total


def disk_bytes(path):
    """Bytes of a file or of every file under a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def to_ms(text):
    """wrk's latency figure ("512.00us", "1.20ms", "2.00s") in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[m.group(2)]


def wrk(args, port, path):
    """Runs wrk against path; returns (req/s, p50 ms, p99 ms, non-2xx count)."""
    out = subprocess.run(
        ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
         f"http://{HOST}:{port}{path}"], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, p50, p99, int(bad.group(1)) if bad else 0


def first_line(cmd):
    """The first line a version command prints on stdout or stderr."""
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return ((r.stdout or "") + (r.stderr or "")).strip().splitlines()[0]


def machine():
    """nproc, memory and CPU model."""
    model = "unknown"
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="ascii") as f:
        mem = int(f.readline().split()[1]) / 1048576
    return f"{os.cpu_count()} CPUs, {mem:.1f} GiB, {model}"


def start(cmd, log):
    """Starts a server with its output in a log file."""
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop(proc):
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


NGINX_CONF = """daemon off;
master_process on;
worker_processes {workers};
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {p}/root;
        location / {{ default_type application/json; }}
    }}
}}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--daemon", default="build-release/somrated")
    ap.add_argument("--dir", default="/tmp/somrated-compare")
    ap.add_argument("--years", type=int, default=1)
    ap.add_argument("--changes-per-day", type=float, default=4)
    ap.add_argument("--scrape-interval", type=int, default=60, help="Prometheus sample spacing, s")
    ap.add_argument("--duration", type=int, default=10, help="wrk seconds per server")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--history-duration", type=int, default=10,
                    help="wrk seconds per history query")
    ap.add_argument("--nginx-workers", default="1,auto",
                    help="comma-separated nginx worker_processes values, one wrk run each")
    args = ap.parse_args()
    daemon = os.path.abspath(args.daemon)
    d = os.path.abspath(args.dir)
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("nginx/root/api/v1", "tsdb"):
        os.makedirs(os.path.join(d, sub))
    log = open(os.path.join(d, "servers.log"), "w", encoding="utf-8")

    print("machine:", machine())
    for cmd in ([daemon, "--version"], ["nginx", "-v"], ["prometheus", "--version"],
                ["wrk", "-v"]):
        print(f"version: {first_line(cmd)}")

    # Data: the same series for both stores.
    end = int(time.time()) // 60 * 60 - 3600
    csv_path, om_path = os.path.join(d, "rates.csv"), os.path.join(d, "rates.om")
    t0 = time.monotonic()
    n_changes, n_samples = generate(args, csv_path, om_path, end)
    print(f"data: {args.years} y of USD/EUR/RUB, ~{args.changes_per_day:g} changes/day each: "
          f"{n_changes} change points; Prometheus gets a sample every {args.scrape_interval} s: "
          f"{n_samples} samples ({time.monotonic() - t0:.1f} s to write)")
    db = os.path.join(d, "rates.db")
    config = os.path.join(d, "somrated.toml")
    with open(config, "w", encoding="ascii") as f:
        # A source that never succeeds: the benchmark measures the API, not scraping.
        f.write(f'[log]\nlevel = "error"\n\n[[source]]\nname = "{SOURCE}"\nkind = "24kg"\n'
                f'url = "file://{d}/missing.html"\ninterval = "1h"\n')
    subprocess.run([daemon, "--config", config, "import", "--db", db, csv_path], check=True,
                   stdout=subprocess.DEVNULL)
    t0 = time.monotonic()
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics",
                    "--max-block-duration=8760h", om_path, os.path.join(d, "tsdb")],
                   check=True, stdout=subprocess.DEVNULL)
    print(f"promtool backfill: {time.monotonic() - t0:.1f} s")

    # somrated.
    port = free_port()
    ours = start([daemon, "--db", db, "--listen", f"{HOST}:{port}", "--config", config], log)
    procs = [ours]
    try:
        wait_http(port, "/healthz", ours)
        latest = fetch(port, "GET", "/api/v1/latest")
        with open(os.path.join(d, "nginx/root/api/v1/latest"), "wb") as f:
            f.write(latest)

        # nginx with the same bytes, once per worker count asked for.
        print(f"\nGET /api/v1/latest ({len(latest)} B): wrk -t{args.threads} "
              f"-c{args.connections} -d{args.duration}s, one server after the other")
        results = [("somrated", wrk(args, port, "/api/v1/latest"))]
        ngx_rss = {}
        prefix = os.path.join(d, "nginx")
        for workers in args.nginx_workers.split(","):
            ngx_port = free_port()
            with open(os.path.join(prefix, "nginx.conf"), "w", encoding="ascii") as f:
                f.write(NGINX_CONF.format(p=prefix, port=ngx_port, workers=workers))
            ngx = start(["nginx", "-p", prefix, "-c", os.path.join(prefix, "nginx.conf"), "-e",
                         os.path.join(prefix, "error.log")], log)
            procs.append(ngx)
            wait_http(ngx_port, "/api/v1/latest", ngx)
            if fetch(ngx_port, "GET", "/api/v1/latest") != latest:
                sys.exit("compare: nginx does not serve the same bytes")
            name = f"nginx w={workers}"
            results.append((name, wrk(args, ngx_port, "/api/v1/latest")))
            ngx_rss[name] = (tree_rss(ngx.pid), tree_rss(ngx.pid, "RssAnon"))
            stop(ngx)
        print(f"{'server':<16} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
              f"{'ours/it':>8}")
        for name, r in results:
            print(f"{name:<16} {r[0]:>10.0f} {r[1]:>8.3f} {r[2]:>8.3f} {r[3]:>8} "
                  f"{results[0][1][0] / r[0]:>8.2f}")

        # Prometheus over the backfilled TSDB.
        prom_port = free_port()
        prom_yml = os.path.join(d, "prometheus.yml")
        with open(prom_yml, "w", encoding="ascii") as f:
            f.write("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
        prom = start(["prometheus", f"--config.file={prom_yml}",
                      f"--storage.tsdb.path={d}/tsdb", f"--web.listen-address={HOST}:{prom_port}",
                      f"--storage.tsdb.retention.time={args.years + 1}y"], log)
        procs.append(prom)
        wait_http(prom_port, "/-/ready", prom)

        q_end = end
        q_start = q_end - 365 * 86400
        step = 9 * 3600  # 974 points over a year
        sel = f'somrated_rate{{source="{SOURCE}",currency="USD"}}'
        prom_path = "/api/v1/query_range?" + urlencode(
            {"query": sel, "start": q_start, "end": q_end, "step": step})
        hist_path = "/api/v1/history?" + urlencode(
            {"currency": "USD", "source": SOURCE, "from": rfc3339(q_start),
             "to": rfc3339(q_end), "step": "9h"})
        graf_body = json.dumps({
            "range": {"from": rfc3339(q_start), "to": rfc3339(q_end)},
            "intervalMs": step * 1000, "maxDataPoints": 1000,
            "targets": [{"target": f"USD@{SOURCE}", "refId": "A"}]}).encode()
        prom_body = json.loads(fetch(prom_port, "GET", prom_path))
        prom_points = sum(len(r["values"]) for r in prom_body["data"]["result"])
        hist_points = len(json.loads(fetch(port, "GET", hist_path)).get("points", []))
        graf_points = sum(len(s.get("datapoints", [])) for s in
                          json.loads(fetch(port, "POST", "/grafana/query", graf_body)))

        print(f"\n1-year USD history at step 9h: wrk -t1 -c1 -d{args.history_duration}s each, "
              "one keep-alive connection, requests back to back (median, p99)")
        rows = []
        for name, p, method, path, body, pts in (
                ("prometheus query_range", prom_port, "GET", prom_path, None, prom_points),
                ("somrated /api/v1/history", port, "GET", hist_path, None, hist_points),
                ("somrated /grafana/query", port, "POST", "/grafana/query", graf_body,
                 graf_points)):
            size = len(fetch(p, method, path, body))
            med, p99, count, bad = latencies(args, p, method, path, body)
            if bad:
                sys.exit(f"compare: {name}: {bad} answers were not 2xx")
            rows.append((name, med, p99, size, pts, count))
        print(f"{'query':<26} {'median ms':>10} {'p99 ms':>8} {'bytes':>8} {'points':>7} "
              f"{'requests':>9} {'ratio':>7}")
        prom_median = rows[0][1]
        for name, med, p99, size, pts, count in rows:
            print(f"{name:<26} {med:>10.3f} {p99:>8.3f} {size:>8} {pts:>7} {count:>9} "
                  f"{med / prom_median:>7.3f}")

        our_rss, prom_rss = vmrss(ours.pid), vmrss(prom.pid)
        our_disk = sum(disk_bytes(db + s) for s in ("", "-wal", "-shm") if os.path.exists(db + s))
        prom_disk = disk_bytes(os.path.join(d, "tsdb"))
        print(f"\n{'process':<12} {'VmRSS KiB':>10} {'anon KiB':>9} {'disk bytes':>12}")
        print(f"{'somrated':<12} {our_rss:>10} {vmrss(ours.pid, 'RssAnon'):>9} {our_disk:>12}")
        print(f"{'prometheus':<12} {prom_rss:>10} {vmrss(prom.pid, 'RssAnon'):>9} "
              f"{prom_disk:>12}")
        for name, (kib, anon) in ngx_rss.items():
            print(f"{name:<12} {kib:>10} {anon:>9} {'':>12}  (master + workers, after wrk)")
        print(f"ratio somrated/prometheus: RSS {our_rss / prom_rss:.3f}, "
              f"disk {our_disk / prom_disk:.3f}, "
              f"median latency history {rows[1][1] / prom_median:.3f}, "
              f"grafana {rows[2][1] / prom_median:.3f}")
    finally:
        for p in procs:
            stop(p)
        log.close()


if __name__ == "__main__":
    main()
