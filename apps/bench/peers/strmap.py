#!/usr/bin/python3
"""strmap.py: the Python peer of `mpx-bench strmap` (issue 10): the same N strings of 10-200 bytes
(a 64-bit LCG, seed 42, letters) through multiprocessing.Pool.map and Pool.imap with hashlib.md5,
each answered with its 16-byte digest. Prints one --json line per API with the keys of mpx-bench
(peer, backend, workload, workers, tasks, seconds, tasks_per_s, api, xor: the xor of every digest's
first byte, equal to mpx-bench's when both computed the same digests).
  /usr/bin/python3 apps/bench/peers/strmap.py [N] [WORKERS]"""
import hashlib
import json
import multiprocessing
import sys
import time


def make_strings(n):
    s, out, mask = 42, [], (1 << 64) - 1
    for i in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) & mask
        k = 10 + (s >> 33) % 191
        out.append(bytes(97 + (i + j) % 26 for j in range(k)))
    return out


def digest(b):
    return hashlib.md5(b).digest()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    w = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    items = make_strings(n)
    with multiprocessing.Pool(w) as pool:
        for api in ("map", "imap"):
            t0 = time.perf_counter()
            if api == "map":
                res = pool.map(digest, items)
            else:  # default chunksize of imap is 1; Python users pass one: as map's default
                chunk = max(1, -(-n // (4 * w)))
                res = list(pool.imap(digest, items, chunksize=chunk))
            s = time.perf_counter() - t0
            x = 0
            for d in res:
                x ^= d[0]
            print(json.dumps({"peer": "python-pool", "backend": "processes", "workload": "strmap",
                              "workers": w, "tasks": n, "seconds": round(s, 6),
                              "tasks_per_s": round(n / s, 1), "api": api, "xor": x}), flush=True)


if __name__ == "__main__":
    main()
