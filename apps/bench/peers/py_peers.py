#!/usr/bin/env python3
"""py_peers.py: what a Python programmer uses instead of mpx, timed on mpx-bench's workloads.

Every measurement prints one JSON line with mpx-bench --json's keys (peer, backend, workload,
workers, tasks, seconds, tasks_per_s, then extras), so `mpx-bench report` parses both alike.
Each mode checks its answers (a wrong sum is an error, exit 1), and warms its pool up first, so
the time is the steady state and not the pool's start.

  py_peers.py empty N W       N no-op tasks submitted, then every result taken:
                              concurrent.futures ProcessPoolExecutor and ThreadPoolExecutor
  py_peers.py latency N W     N sequential submit -> result round trips on the same two executors
  py_peers.py map N W         multiprocessing.Pool.map of N no-op items with Python's default
                              chunks, then Pool.imap with the same chunk size, then Pool.map with
                              chunksize 1 on N/20 items (Python's worst case, what imap defaults to)
  py_peers.py pingpong N      a token passed N times between two threads over two queue.Queue, and
                              between two processes over two multiprocessing.Queue
  py_peers.py skew N W LONG   one LONG-second sleep, then N sleeps of 1 ms on each executor: when
                              the last short one is done, against the ideal N x 1 ms / (W - 1)
  mpirun -np W+1 python3 -m mpi4py.futures py_peers.py mpi N
                              mpi4py.futures MPIPoolExecutor: N submits, then map(chunksize=256)

Bad arguments: a usage line on stderr, exit 2. The strmap peer is strmap.py beside this file.
"""
import json
import sys
import time


def noop(x):
    return x


def nap(seconds):
    time.sleep(seconds)
    return seconds


def emit(peer, backend, workload, workers, tasks, seconds, **extra):
    row = {"peer": peer, "backend": backend, "workload": workload, "workers": workers,
           "tasks": tasks, "seconds": round(seconds, 6),
           "tasks_per_s": round(tasks / seconds, 1) if seconds > 0 else 0.0}
    row.update(extra)
    print(json.dumps(row), flush=True)


def executors(w):
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
    return (("python-ProcessPoolExecutor", "processes", ProcessPoolExecutor(w)),
            ("python-ThreadPoolExecutor", "threads", ThreadPoolExecutor(w)))


def submit_all(ex, n):
    t = time.perf_counter()
    futures = [ex.submit(noop, i) for i in range(n)]
    total = sum(f.result() for f in futures)
    s = time.perf_counter() - t
    if total != n * (n - 1) // 2:
        raise SystemExit("py_peers: wrong sum of results")
    return s


def empty(n, w):
    for peer, backend, ex in executors(w):
        with ex:
            list(ex.map(noop, range(64)))
            emit(peer, backend, "empty", w, n, submit_all(ex, n))


def latency(n, w):
    for peer, backend, ex in executors(w):
        with ex:
            list(ex.map(noop, range(64)))
            t = time.perf_counter()
            for i in range(n):
                if ex.submit(noop, i).result() != i:
                    raise SystemExit("py_peers: wrong result")
            s = time.perf_counter() - t
            emit(peer, backend, "latency", w, n, s, us_per_round_trip=round(s / n * 1e6, 3))


def pool_map(n, w):
    import multiprocessing
    with multiprocessing.Pool(w) as pool:
        pool.map(noop, range(64))
        chunk = max(1, -(-n // (4 * w)))  # what Pool.map picks by default, rounded up
        for api, count, cs in (("map", n, None), ("imap", n, chunk), ("map", max(1, n // 20), 1)):
            t = time.perf_counter()
            if api == "map":
                out = pool.map(noop, range(count), chunksize=cs)
            else:
                out = list(pool.imap(noop, range(count), chunksize=cs))
            s = time.perf_counter() - t
            if len(out) != count or out[-1] != count - 1:
                raise SystemExit("py_peers: wrong map results")
            emit("python-Pool.%s%s" % (api, "(chunksize=1)" if cs == 1 else ""), "processes",
                 "map", w, count, s, chunksize=cs if cs else "default")


def _side(mine, theirs, n, first):
    for _ in range(n):
        if first:
            theirs.put(1)
            mine.get()
        else:
            mine.get()
            theirs.put(1)


def pingpong(n):
    import multiprocessing
    import queue
    import threading
    for peer, backend, make, spawn in (
            ("python-queue.Queue", "threads", queue.Queue, threading.Thread),
            ("python-multiprocessing.Queue", "processes", multiprocessing.Queue,
             multiprocessing.Process)):
        a, b = make(), make()
        other = spawn(target=_side, args=(b, a, n + 1, False))  # b: its inbox, a: ours
        other.start()
        b.put(0)  # one untimed round: the other side is up once the token comes back
        a.get()
        t = time.perf_counter()
        _side(a, b, n, True)
        s = time.perf_counter() - t
        other.join()
        emit(peer, backend, "pingpong", 2, n, s)


def skew(n, w, long_s):
    from concurrent.futures import as_completed
    short = 0.001
    for peer, backend, ex in executors(w):
        with ex:
            list(ex.map(nap, [0] * 64))
            t = time.perf_counter()
            big = ex.submit(nap, float(long_s))
            smalls = [ex.submit(nap, short) for _ in range(n)]
            last = 0.0
            for _ in as_completed(smalls):
                last = time.perf_counter() - t
            big.result()
            ideal = n * short / max(1, w - 1)
            emit(peer, backend, "skew", w, n + 1, last, ideal_s=round(ideal, 4),
                 ratio=round(last / ideal, 3))


def mpi(n):
    from mpi4py import MPI
    from mpi4py.futures import MPIPoolExecutor
    w = MPI.COMM_WORLD.Get_size() - 1
    with MPIPoolExecutor() as ex:
        list(ex.map(noop, range(64)))
        emit("mpi4py.futures", "mpi", "empty", w, n, submit_all(ex, n))
        t = time.perf_counter()
        out = list(ex.map(noop, range(n), chunksize=256))
        s = time.perf_counter() - t
        if len(out) != n or out[-1] != n - 1:
            raise SystemExit("py_peers: wrong map results")
        emit("mpi4py.futures-map", "mpi", "map", w, n, s, chunksize=256)


MODES = {"empty": (empty, 2), "latency": (latency, 2), "map": (pool_map, 2),
         "pingpong": (pingpong, 1), "skew": (skew, 3), "mpi": (mpi, 1)}


def main(argv):
    try:
        fn, nargs = MODES[argv[1]]
        args = [float(a) if i == 2 and argv[1] == "skew" else int(a)
                for i, a in enumerate(argv[2:])]
        if len(args) != nargs or any(a <= 0 for a in args):
            raise ValueError
    except (IndexError, KeyError, ValueError):
        print("usage: py_peers.py empty|latency|map N W | pingpong N | skew N W LONG_S | mpi N "
              "(all positive)", file=sys.stderr)
        return 2
    fn(*args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
