"""Load on kiln's API while a job trains: submit throughput and metrics latency.

usage: store_load.py BASE_URL[,BASE_URL...] [SUBMITS] [METRICS_REQUESTS] [THREADS]
       store_load.py --resumed BASE_URL JOB DEAD_REPLICA KILLED_AT

1. Submits one long job and waits until it trains (the load runs beside training, as in use).
2. SUBMITS small jobs from THREADS threads at once, spread over the servers (replicas of one
   database): jobs accepted per second.
3. METRICS_REQUESTS GETs of the training job's /jobs/{id}/metrics from THREADS threads, spread
   the same way: p50 and p99 latency in milliseconds.
Prints one line: submits_per_sec= metrics_p50_ms= metrics_p99_ms= trained=<the long job's id>.

--resumed: after the replica DEAD_REPLICA training JOB was killed at KILLED_AT (Unix seconds),
waits until the job trains again elsewhere (running on another replica, its step moving) and
prints failover_s=. Standard library only.
"""

import json
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"null")


def job(epochs, train_size):
    return {
        "model": {"kind": "lenet_bn"},
        "data": {"dataset": "synthetic_images", "train_size": train_size, "test_size": 64},
        "training": {"epochs": epochs, "batch_size": 64, "log_every": 1},
        "checkpoint": {"every": 1000, "keep_last": 1},
    }


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def resumed(base, job_id, dead, killed_at):
    deadline = time.time() + 600
    moved_at_step = None
    while time.time() < deadline:
        job = call("GET", f"{base}/jobs/{job_id}")[1]
        if job["status"] == "running" and job.get("replica") not in (None, dead):
            step = job["progress"]["step"]
            if moved_at_step is None:
                moved_at_step = step
            elif step > moved_at_step:
                print(f"failover_s={time.time() - killed_at:.1f}")
                return
        time.sleep(0.05)
    sys.exit("the job never trained again")


def main():
    if sys.argv[1] == "--resumed":
        return resumed(sys.argv[2].rstrip("/"), sys.argv[3], sys.argv[4], float(sys.argv[5]))
    bases = [b.rstrip("/") for b in sys.argv[1].split(",")]
    base = bases[0]
    submits = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    requests = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 4

    _, trained = call("POST", f"{base}/jobs", job(100, 5000))
    deadline = time.time() + 120
    while call("GET", f"{base}/jobs/{trained['id']}")[1]["progress"]["step"] < 5:
        if time.time() > deadline:
            sys.exit("the job never started training")
        time.sleep(0.2)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        statuses = list(
            pool.map(lambda i: call("POST", f"{bases[i % len(bases)]}/jobs", job(1, 64))[0], range(submits))
        )
    submit_secs = time.perf_counter() - start
    if any(s != 201 for s in statuses):
        sys.exit(f"not every submit was accepted: {sorted(set(statuses))}")

    path = f"/jobs/{trained['id']}/metrics?limit=100"

    def timed(i):
        t = time.perf_counter()
        call("GET", bases[i % len(bases)] + path)
        return (time.perf_counter() - t) * 1000

    with ThreadPoolExecutor(threads) as pool:
        latencies = list(pool.map(timed, range(requests)))
    print(
        f"submits_per_sec={submits / submit_secs:.1f} "
        f"metrics_p50_ms={percentile(latencies, 50):.2f} metrics_p99_ms={percentile(latencies, 99):.2f} "
        f"trained={trained['id']}"
    )


if __name__ == "__main__":
    main()
