#!/usr/bin/env python3
"""mpx-bench report: every mpx-bench workload beside its peers, as a Markdown table and PNG plots.

Installed as mpx-bench-report beside mpx-bench, which execs it for `mpx-bench report ARGS`.

  mpx-bench report [--out DIR] [--repeats N] [--quick] [--workers W] [--no-mpi]
                   [--only WORKLOAD,...] [--timeout S]

Runs the workloads empty, map, latency, pingpong (queues), metg, skew, payload, strmap and farm
on mpx's backends (threads, processes, MPI ranks under `mpirun -np W+1`) and on the peers of
apps/bench/peers (Python's executors, pools and queues, mpi4py.futures, OpenMP tasks, oneTBB, a raw
MPI farm, pipe / condvar / memcpy / socketpair limits, xargs and GNU parallel). Each repetition
runs every command once, in the opposite order to the repetition before, so that mpx and its peers
alternate and a slow minute of a shared machine hits both sides of a pair; the table gives the
median and the range (min-max) over the repetitions, and the CPU steal time seen while each
command ran. Nothing is asserted about speed: the figures are measured and written down.

Writes into DIR (default ./mpx-report): report.md (machine, table, notes of skipped or failed
commands), results.jsonl (every row parsed, with its repetition and steal), data/*.dat and, when
gnuplot is installed, throughput.png, metg.png, payload.png and farm.png. A peer whose program or
package is missing is skipped with a note; a peer that fails is a note too. Exit status: 0 when
every mpx command ran, 1 when one failed (report.md is still written), 2 for bad arguments.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

WITH_MPI = "@MPX_WITH_MPI@"  # ON or OFF, filled in by CMake (unfilled: try MPI if mpirun exists)
HERE = os.path.dirname(os.path.realpath(__file__))
WORKLOADS = ["empty", "map", "latency", "pingpong", "metg", "skew", "payload", "strmap", "farm"]

# Sizes: full report (a few minutes at --repeats 3 on 2 cores) and --quick (a smoke test).
SIZES = {
    False: dict(empty_t=2000000, empty_p=1000000, py_empty=10000, mpi4py=5000, mpi_farm=200000,
                map=20000000, py_map=400000, latency=30000, py_latency=5000, pingpong=50000,
                py_pingpong=20000, limits=30000, metg_cap=2000000, skew=200, skew_long=1.0,
                payload="1M..64M", payload_mib=[1, 4, 16, 64], strmap=200000, farm=2000,
                parallel=150),
    True: dict(empty_t=20000, empty_p=20000, py_empty=500, mpi4py=500, mpi_farm=2000,
               map=200000, py_map=10000, latency=2000, py_latency=200, pingpong=5000,
               py_pingpong=500, limits=2000, metg_cap=20000, skew=20, skew_long=0.1,
               payload="256K..1M", payload_mib=[1], strmap=5000, farm=40, parallel=20),
}


def die(msg):
    print("mpx-bench report: " + msg, file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="mpx-bench report", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="mpx-report", help="output directory (default mpx-report)")
    p.add_argument("--repeats", type=int, default=3, help="repetitions of every command (3)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 repetition, no MPI")
    p.add_argument("--workers", type=int, default=2, help="workers / slots / ranks-1 (2)")
    p.add_argument("--no-mpi", action="store_true", help="leave out every mpirun command")
    p.add_argument("--only", default="", help="comma-separated workloads (default: all)")
    p.add_argument("--timeout", type=float, default=0, help="seconds per command (300; quick 120)")
    a = p.parse_args(argv)  # exits 2 on unknown options, 0 with --help on stdout
    if a.quick and "--repeats" not in " ".join(argv):
        a.repeats = 1
    if not 1 <= a.repeats <= 100:
        die("--repeats must be 1..100, not %d" % a.repeats)
    if not 1 <= a.workers <= 64 * (os.cpu_count() or 1):
        die("--workers must be 1..%d (64 x the cores), not %d" % (64 * (os.cpu_count() or 1),
                                                                  a.workers))
    if a.timeout < 0 or a.timeout > 86400:
        die("--timeout must be 0 (default) .. 86400 seconds")
    a.timeout = a.timeout or (120 if a.quick else 300)
    a.only = [w for w in a.only.split(",") if w] or list(WORKLOADS)
    for w in a.only:
        if w not in WORKLOADS:
            die("unknown workload '%s' (one of %s)" % (w, ", ".join(WORKLOADS)))
    return a


def find_peers():
    for d in (os.environ.get("MPX_PEERS_DIR"), os.path.join(HERE, "mpx-peers"),
              os.path.join(HERE, "..", "libexec", "mpx", "peers"), os.path.join(HERE, "peers")):
        if d and os.path.isfile(os.path.join(d, "py_peers.py")):
            return os.path.realpath(d)
    return None


def cpu_ticks():
    """(total, steal) jiffies of all CPUs from /proc/stat; (0, 0) where there is none."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return sum(v), v[7]
    except (OSError, ValueError, IndexError):
        return 0, 0


def steal_pct(t0, t1):
    return 100.0 * (t1[1] - t0[1]) / (t1[0] - t0[0]) if t1[0] > t0[0] else 0.0


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


TEXT_ROW = re.compile(r"^(\S+)\s+(\S+)\s+(\d+) workers\s+(\d+) tasks\s+([\d.]+) s\s+([\d.]+) "
                      r"tasks/s\s*(.*)$")
METG_ROW = re.compile(r"^(\S+)\s+metg\s+(\d+) workers\s+(?:METG ([\d.]+) us|no METG)")


def parse_rows(out):
    """mpx-bench and peer output: JSON lines, or mpx-bench's text rows (metg's steps)."""
    rows = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
            continue
        m = METG_ROW.match(line)  # the text run's METG line: "METG x us (...)" or "no METG: ..."
        if m:
            rows.append({"peer": "mpx-" + m.group(1), "backend": m.group(1), "workload": "metg",
                         "workers": int(m.group(2)), "tasks": 0, "seconds": 0.0,
                         "tasks_per_s": 0.0, "metg_us": float(m.group(3) or -1)})
            continue
        m = TEXT_ROW.match(line)
        if not m:
            continue
        row = {"peer": "mpx-" + m.group(1), "backend": m.group(1), "workload": m.group(2),
               "workers": int(m.group(3)), "tasks": int(m.group(4)),
               "seconds": float(m.group(5)), "tasks_per_s": float(m.group(6))}
        extra = re.sub(r"\s+binding \S+$", "", m.group(7)).strip()
        try:
            row.update(json.loads("{" + extra + "}") if extra else {})
        except ValueError:
            pass
        rows.append(row)
    return rows


class Cmd:
    def __init__(self, group, name, argv, mpx, env=None, skip=None, post=None):
        self.group, self.name, self.argv, self.mpx = group, name, argv, mpx
        self.env, self.skip, self.post = env, skip, post


def plan(a, t):
    """Every command of the report, or its reason to be skipped."""
    S, W = SIZES[a.quick], a.workers
    bench, farm = t["bench"], t["farm"]
    peers, py = t["peers"], t["py"]
    mpirun = ["mpirun", "--oversubscribe", "-np", str(W + 1)]
    no_mpi = t["no_mpi"]
    cmds = []

    def mpx(group, backend, *args, text=False):
        argv = [bench, group, "--backend", backend] + list(args) + ([] if text else ["--json"])
        skip = None if group in t["workloads"] else "this mpx-bench has no '%s' workload" % group
        if backend == "mpi":
            argv, skip = mpirun + argv, skip or no_mpi
        else:
            argv[4:4] = ["--workers", str(W)]
        cmds.append(Cmd(group, "mpx %s %s" % (group, backend), argv, True, skip=skip))

    def peer(group, name, argv, need=None, mpi=False):
        skip = need or (no_mpi if mpi else None) or t["no_peers"]
        if not skip and argv[0] != py and not os.path.isfile(argv[0]):
            skip = "not built here (%s)" % os.path.basename(argv[0])
        cmds.append(Cmd(group, name, mpirun + argv if mpi else argv, False, skip=skip))

    P = lambda f: os.path.join(peers or "-", f)  # noqa: E731
    nopy = None if py else "no python3"
    for b, n in (("threads", S["empty_t"]), ("processes", S["empty_p"]), ("mpi", S["empty_p"])):
        mpx("empty", b, "--tasks", str(n))
    peer("empty", "python executors", [py, P("py_peers.py"), "empty", str(S["py_empty"]), str(W)],
         nopy)
    peer("empty", "OpenMP tasks", [P("openmp_peer"), "empty", str(S["empty_t"]), str(W)])
    peer("empty", "oneTBB task_group", [P("tbb_peer"), "empty", str(S["empty_t"]), str(W)])
    peer("empty", "raw MPI farm", [P("mpi_farm"), str(S["mpi_farm"])], mpi=True)
    peer("empty", "mpi4py.futures (empty and map)",
         [py, "-m", "mpi4py.futures", P("py_peers.py"), "mpi", str(S["mpi4py"])],
         nopy or t["no_mpi4py"], mpi=True)
    for b in ("threads", "processes", "mpi"):
        mpx("map", b, "--tasks", str(S["map"]))
    peer("map", "python Pool.map/imap", [py, P("py_peers.py"), "map", str(S["py_map"]), str(W)],
         nopy)
    for b in ("threads", "processes", "mpi"):
        mpx("latency", b, "--tasks", str(S["latency"]))
    peer("latency", "python executors", [py, P("py_peers.py"), "latency", str(S["py_latency"]),
                                         str(W)], nopy)
    mpx("pingpong", "threads", "--tasks", str(S["pingpong"]))  # runs threads, then processes
    peer("pingpong", "python queues", [py, P("py_peers.py"), "pingpong", str(S["py_pingpong"])],
         nopy)
    peer("pingpong", "pipe and condvar limits", [P("limits"), str(S["limits"])])
    for b in ("threads", "processes"):
        mpx("metg", b, "--tasks", str(S["metg_cap"]), "--repeat", "1", text=True)  # text: steps
    peer("metg", "OpenMP tasks", [P("openmp_peer"), "metg", str(W), str(S["metg_cap"])])
    for b in ("threads", "processes"):
        mpx("skew", b, "--tasks", str(S["skew"]), "--long", str(S["skew_long"]), "--short", "1")
    peer("skew", "python executors", [py, P("py_peers.py"), "skew", str(S["skew"]), str(W),
                                      str(S["skew_long"])], nopy)
    for b in ("processes", "mpi"):
        mpx("payload", b, "--size", S["payload"])
    peer("payload", "memcpy and socketpair", [P("payload_limits")] + [str(m) for m in
                                                                      S["payload_mib"]])
    for b in ("threads", "processes", "mpi"):
        mpx("strmap", b, "--tasks", str(S["strmap"]))
    peer("strmap", "python Pool.map/imap", [py, P("strmap.py"), str(S["strmap"]), str(W)], nopy)
    tasks = os.path.join(t["scratch"], "farm.tasks")
    with open(tasks, "w") as f:
        f.write("true\n" * S["farm"])
    cmds.append(Cmd("farm", "mpx-farm", [farm, "-j", str(W), "--progress", "off", "--journal",
                                         os.path.join(t["scratch"], "farm.journal"), tasks],
                    True, skip=None if os.path.isfile(farm) else "mpx-farm not built",
                    post=("farm", S["farm"], W)))
    peer("farm", "xargs -P", [P("farm.sh"), "xargs", str(S["farm"]), str(W)])
    peer("farm", "GNU parallel --joblog", [P("farm.sh"), "parallel", str(S["parallel"]), str(W)])
    return [c for c in cmds if c.group in a.only]


def run(cmd, a, env):
    """Run one command: (rows, steal %, error or None)."""
    if cmd.post:  # mpx-farm: removes its old journal, times itself, then counts the journal
        journal = cmd.argv[cmd.argv.index("--journal") + 1]
        for f in (journal, journal + ".status"):
            if os.path.exists(f):
                os.remove(f)
    t0, c0 = time.monotonic(), cpu_ticks()
    try:
        p = subprocess.run(cmd.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           timeout=a.timeout, universal_newlines=True, errors="replace")
        out, err, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout or ""
        err, rc = "timed out after %g s" % a.timeout, -1
    except OSError as e:
        return [], 0.0, str(e)
    secs, steal = time.monotonic() - t0, steal_pct(c0, cpu_ticks())
    if rc:
        last = [ln for ln in err.splitlines() if ln.strip()][-1:] or ["(no message)"]
        return parse_rows(out), steal, "exit %d: %s" % (rc, last[0][:200])
    rows = parse_rows(out)
    if cmd.post:
        _, n, w = cmd.post
        with open(journal, errors="replace") as f:
            done = sum(1 for ln in f if ln.startswith("F"))
        if done != n:
            return [], steal, "its journal shows %d of %d tasks finished" % (done, n)
        rows = [{"peer": "mpx-farm", "backend": "threads", "workload": "farm", "workers": w,
                 "tasks": n, "seconds": round(secs, 6), "tasks_per_s": round(n / secs, 1)}]
    return rows, steal, None if rows or "skipped" in out else "printed no result"


def metrics(row):
    """(series label, metric, value, unit, higher is better) for each figure a row holds."""
    wl, who = row.get("workload"), row.get("peer", "?")
    if row.get("api") and row["api"] not in who:
        who += " " + row["api"]
    if wl == "payload":
        mib = "%g MiB" % (row.get("size", 0) / 1048576)
        if "args_gb_s" in row:
            return [(who + " args " + mib, "GB/s", row["args_gb_s"], "GB/s", True),
                    (who + " results " + mib, "GB/s", row["results_gb_s"], "GB/s", True)]
        return [(who + " " + mib, "GB/s", row.get("gb_s", 0), "GB/s", True)]
    if wl == "metg":
        return [(who, "METG", row.get("metg_us", -1), "us", False)]
    if wl in ("skew", "skew-pareto"):
        return [(who, "ratio", row.get("ratio", 0), "x ideal", False)]
    if wl == "latency":
        return [(who, "latency", row["seconds"] / row["tasks"] * 1e6, "us", False)]
    if wl == "metg-step":
        return []
    if wl.endswith("-rank0"):  # rank 0's own traffic in that MPI run (flat, or through leaders)
        return [(who + (" leaders" if row.get("leaders") else " flat"), "rank 0 messages",
                 row.get("rank0_msgs_per_1000_tasks", 0), "per 1000 tasks", False)]
    return [(who, "throughput", row.get("tasks_per_s", 0), "tasks/s", True)]


def fmt(v, unit):
    if unit == "tasks/s":
        for div, suf in ((1e6, " M/s"), (1e3, " k/s")):
            if v >= div:
                return "%.3g%s" % (v / div, suf)
        return "%.3g /s" % v
    return "%.3g %s" % (v, unit)


def aggregate(results):
    """{(workload, label): dict(metric, unit, higher, values, steals, mpx)}, in run order."""
    agg = {}
    for r in results:
        for label, metric, v, unit, higher in metrics(r):
            e = agg.setdefault((r["workload"], label), dict(
                metric=metric, unit=unit, higher=higher, values=[], steals=[], loads=[], none=0,
                mpx=r.get("peer", "").startswith("mpx")))
            if metric == "METG" and v < 0:  # no grain reached 50%: not a figure to take a median of
                e["none"] += 1
            else:
                e["values"].append(v)
            e["steals"].append(r["_steal"])
            e["loads"].append(r["_load"])
    return agg


def order_key(item, first_seen):
    (wl, label), e = item
    base = wl.replace("-pareto", "")
    return (WORKLOADS.index(base) if base in WORKLOADS else 99, wl, not e["mpx"],
            first_seen[(wl, label)])


def table(agg):
    first_seen = {k: i for i, k in enumerate(agg)}
    out = ["| workload | mpx backend / peer | metric | median | range (min-max) | runs | "
           "steal max | load max |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for (wl, label), e in sorted(agg.items(), key=lambda it: order_key(it, first_seen)):
        v, u = e["values"], e["unit"]
        best = "higher" if e["higher"] else "lower"
        label = label.replace("|", "\\|")  # a peer's name cannot break the table
        who = "**%s**" % label if e["mpx"] else label
        runs = "%d" % len(v) + (" (+%d none)" % e["none"] if e["none"] else "")
        med, rng = (fmt(statistics.median(v), u), "%s - %s" % (fmt(min(v), u), fmt(max(v), u))) \
            if v else ("none", "-")
        out.append("| %s | %s | %s (%s better) | %s | %s | %s | %.0f%% | %.1f |" % (
            wl, who, e["metric"], best, med, rng, runs, max(e["steals"]), max(e["loads"])))
    return out


def gp_str(s):
    """A gnuplot string literal: single quotes, where gnuplot neither expands escapes nor runs
    `backquoted` commands (it would in double quotes); a quote inside is doubled."""
    return "'%s'" % s.replace("'", "''")


def plots(out, agg, results):
    """Data files and the gnuplot script; PNG names written (none without gnuplot)."""
    data = os.path.join(out, "data")
    os.makedirs(data, exist_ok=True)
    first_seen = {k: i for i, k in enumerate(agg)}
    items = sorted(agg.items(), key=lambda it: order_key(it, first_seen))
    script = ["set termoption noenhanced", "set grid", "set key outside right top",
              "set style fill solid 0.6 border -1", "set boxwidth 0.7"]
    pngs = []

    def bars(name, title, rows):
        path = os.path.join(data, name + ".dat")
        with open(path, "w") as f:
            f.write("# index label median min max is_mpx\n")
            for i, ((wl, label), e) in enumerate(rows):
                v = e["values"]
                f.write('%d "%s: %s" %g %g %g %d\n' % (i, wl, label.replace('"', "'"),
                                                       statistics.median(v), min(v), max(v),
                                                       e["mpx"]))
        script.extend([
            "set output %s" % gp_str(name + ".png"), "set title %s" % gp_str(title),
            "set logscale y", "set ylabel 'tasks/s (median, bar: range)'",
            "set xtics rotate by -50 font ',9'", "set bmargin 16", "unset logscale x",
            "set xrange [-1:%d]" % len(rows), "unset xlabel",
            "plot %s using 1:($6==1?$3:1/0):xtic(2) with boxes lc rgb '#1f77b4' title 'mpx', "
            "'' using 1:($6==0?$3:1/0):xtic(2) with boxes lc rgb '#ff7f0e' title 'peer', "
            "'' using 1:3:4:5 with yerrorbars lc rgb 'black' pt 0 notitle" % gp_str(
                "data/" + name + ".dat"),
            "unset xrange", "set bmargin", "set xtics norotate font ''"])
        pngs.append(name + ".png")

    thr = [it for it in items if it[1]["metric"] == "throughput" and it[0][0] != "farm"]
    if thr:
        bars("throughput", "throughput per workload: mpx backends beside their peers (log)", thr)
    farm = [it for it in items if it[0][0] == "farm"]
    if farm:
        bars("farm", "farm: 'true' commands per second (mpx-farm -j W, xargs -P W, parallel -j W)",
             farm)

    def curves(name, title, xlabel, ylabel, series, extra):
        if not series:
            return
        path = os.path.join(data, name + ".dat")
        clauses = []
        with open(path, "w") as f:
            for i, (label, pts) in enumerate(series.items()):
                f.write("# %s\n" % label)
                for x in sorted(pts):
                    v = pts[x]
                    f.write("%g %g %g %g\n" % (x, statistics.median(v), min(v), max(v)))
                f.write("\n\n")
                clauses.append("%s index %d using 1:2:3:4 with yerrorlines lw 2 title %s" % (
                    gp_str("data/" + name + ".dat"), i, gp_str(label)))
        script.extend(["set output %s" % gp_str(name + ".png"), "set title %s" % gp_str(title),
                       "set logscale x", "set xlabel %s" % gp_str(xlabel),
                       "set ylabel %s" % gp_str(ylabel)] + extra +
                      ["plot " + ", ".join(clauses), "unset logscale y", "unset arrow"])
        pngs.append(name + ".png")

    metg = {}
    for r in results:
        if r.get("workload") == "metg-step" and "grain_us" in r:
            g = float("%.2g" % r["grain_us"])  # the calibrated grain, rounded to its step
            metg.setdefault(r["peer"], {}).setdefault(g, []).append(r["efficiency"])
    curves("metg", "METG: efficiency against task grain (50%: the METG)", "task grain (us)",
           "efficiency (median, bar: range)", metg,
           ["unset logscale y", "set yrange [0:*]",
            "set arrow from graph 0, first 0.5 to graph 1, first 0.5 nohead dt 2"])
    pay = {}
    for r in results:
        if r.get("workload") == "payload":
            for label, _, v, _, _ in metrics(r):
                series, _, mib = label.rpartition(" ")[0].rpartition(" ")
                pay.setdefault(series, {}).setdefault(float(mib), []).append(v)
    curves("payload", "payload bandwidth against size", "payload (MiB)",
           "GB/s (median, bar: range)", pay, ["unset yrange", "set logscale y"])
    gp = shutil.which("gnuplot")
    with open(os.path.join(data, "plots.gp"), "w") as f:
        f.write("\n".join(script) + "\n")
    if not gp or not pngs:
        return [], "gnuplot is not installed (Debian: gnuplot-nox): no PNG written" if not gp \
            else None
    term = "pngcairo" if subprocess.run([gp, "-e", "set terminal pngcairo"],
                                        stderr=subprocess.DEVNULL).returncode == 0 else "png"
    head = "set terminal %s size 1280,760\n" % term
    with open(os.path.join(data, "plots.gp"), "w") as f:
        f.write(head + "\n".join(script) + "\n")
    p = subprocess.run([gp, "data/plots.gp"], cwd=out, stderr=subprocess.PIPE,
                       universal_newlines=True)
    made = [n for n in pngs if os.path.isfile(os.path.join(out, n))
            and os.path.getsize(os.path.join(out, n)) > 0]
    err = None if p.returncode == 0 else "gnuplot failed: " + p.stderr.strip()[-300:]
    return made, err


def machine(t, a):
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                         "?")
    except OSError:
        pass
    lines = ["- cores (online, this process may use): %d / %d; CPU: %s" % (
        os.cpu_count() or 0, len(os.sched_getaffinity(0)), model),
        "- kernel %s; Python peers on %s" % (os.uname().release, t["py_version"])]
    topo = ""
    if os.path.isfile(t["topo"]):
        p = subprocess.run([t["topo"]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, errors="replace")
        topo = "\n".join(p.stdout.splitlines()[:40])
    return lines, topo


def strmap_check(results):
    """Whether mpx and strmap.py hashed the same strings to the same digests (their xor)."""
    seen = {}
    for r in results:
        if r.get("workload") == "strmap" and "xor" in r:
            seen.setdefault(r["tasks"], set()).add((r["peer"].startswith("mpx"), r["xor"]))
    notes = []
    for n, s in seen.items():
        sides = {m for m, _ in s}
        if len(sides) == 2:
            ok = len({x for _, x in s}) == 1
            notes.append("strmap: mpx and Python computed %s digests for the same %d strings "
                         "(xor of first bytes %s)" % ("the same" if ok else "DIFFERENT", n,
                                                     "/".join(str(x) for _, x in sorted(s))))
    return notes


def main(argv):
    a = parse_args(argv)
    out = os.path.abspath(a.out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        die("cannot use --out %s: %s" % (a.out, e.strerror))
    bench = os.environ.get("MPX_BENCH") or os.path.join(HERE, "mpx-bench")
    if not os.access(bench, os.X_OK):
        print("mpx-bench report: no mpx-bench beside %s (set MPX_BENCH)" % HERE, file=sys.stderr)
        return 1
    env = dict(os.environ)
    if os.geteuid() == 0:  # Open MPI refuses root without these
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    helptext = subprocess.run([bench, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True).stdout
    listed = set(re.findall(r"^\s+(\w[\w-]*)\s", helptext.split("workloads:", 1)[-1], re.M))
    if "workloads:" not in helptext or not listed:
        print("mpx-bench report: %s --help lists no workloads" % bench, file=sys.stderr)
        return 1
    py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else shutil.which("python3")
    peers = find_peers()
    no_mpi = None
    if a.quick or a.no_mpi:
        no_mpi = "MPI rows are left out (%s)" % ("--quick" if a.quick else "--no-mpi")
    elif not shutil.which("mpirun"):
        no_mpi = "no mpirun (Debian: openmpi-bin)"
    elif WITH_MPI.upper() in ("OFF", "0", "FALSE", "NO"):
        no_mpi = "mpx was built without MPI (MPX_WITH_MPI=OFF)"
    mpi4py_ok = py and subprocess.run([py, "-c", "import mpi4py.futures"],
                                      stderr=subprocess.DEVNULL).returncode == 0
    py_version = subprocess.run([py, "-c", "import platform; print(platform.python_version())"],
                                stdout=subprocess.PIPE, universal_newlines=True).stdout.strip() \
        if py else "(no python3)"
    with tempfile.TemporaryDirectory(prefix="mpx-report-") as scratch:
        t = dict(bench=bench, farm=os.path.join(HERE, "mpx-farm"),
                 topo=os.path.join(HERE, "mpx-topo"), peers=peers, py=py, no_mpi=no_mpi,
                 no_peers=None if peers else "the peers' folder was not found (MPX_PEERS_DIR)",
                 no_mpi4py=None if mpi4py_ok else "mpi4py is not installed (Debian: "
                 "python3-mpi4py)", scratch=scratch, py_version=py_version,
                 workloads=listed)
        cmds = plan(a, t)
        todo = [c for c in cmds if not c.skip]
        load0, start, c0 = loadavg(), time.monotonic(), cpu_ticks()
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        results, errors, skipped, failed = [], {}, {c.name: c.skip for c in cmds if c.skip}, False
        for rep in range(a.repeats):
            for i, c in enumerate(todo if rep % 2 == 0 else todo[::-1]):
                print("mpx-bench report: [%d/%d %2d/%d] %-7s %s ..." % (
                    rep + 1, a.repeats, i + 1, len(todo), c.group, c.name), end="", flush=True)
                t1 = time.monotonic()
                load = float(loadavg().split()[0] if loadavg() != "?" else 0)
                rows, steal, err = run(c, a, env)
                print(" %.1f s, steal %.0f%%%s" % (time.monotonic() - t1, steal,
                                                  ", FAILED: " + err if err else ""), flush=True)
                for r in rows:
                    if "skipped" in r:
                        skipped["%s (%s)" % (c.name, r.get("peer"))] = r["skipped"]
                    elif "workload" in r and "peer" in r:
                        r.update(_rep=rep, _steal=round(steal, 1), _load=load, _cmd=c.name)
                        results.append(r)
                if err:
                    errors.setdefault(c.name, []).append(err)
                    failed = failed or c.mpx
        steal_all, minutes = steal_pct(c0, cpu_ticks()), (time.monotonic() - start) / 60
        topo_lines, topo = machine(t, a)
    with open(os.path.join(out, "results.jsonl"), "w") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    agg = aggregate(results)
    pngs, plot_err = plots(out, agg, results)
    md = ["# mpx-bench report", "",
          "`mpx-bench report %s` started %s, %.1f minutes; %d workers; each command %d time(s), "
          "the order reversed every repetition (alternating pairs)." % (
              " ".join(argv), started, minutes, a.workers, a.repeats), "",
          "**Noisy machine:** these figures come from one run on a shared machine. CPU steal "
          "time over the whole run was %.1f%%; the load average was %s at the start and %s at the "
          "end, and up to %.1f on %d cores when a command started. The same command can vary "
          "2x and more between runs: read the ranges, compare within a run, and never take one "
          "figure for the machine's speed." % (
              steal_all, load0, loadavg(), max([r["_load"] for r in results] or [0]),
              os.cpu_count() or 0),
          "", "## Machine", ""] + topo_lines + ["", "```", topo, "```", "",
                                                "## Results", ""]
    md += table(agg) if agg else ["(nothing was measured)"]
    md += ["", "Metrics: throughput is tasks (items, round trips, commands) per second; latency "
           "the mean of sequential submit->result round trips; METG the smallest task grain "
           "still run at 50% efficiency (a run where no grain did is counted as none; efficiencies "
           "above 1 on its curve mean that the spin loop was calibrated in a slower moment than the "
           "tasks ran: noise); skew's ratio "
           "the time to the last short task "
           "against its ideal, skew-pareto's the makespan against max(longest, sum / W); "
           "payload the bandwidth of big arguments and results (mpx, best of 3) and of bare "
           "memcpy and socketpair transfers; `empty-rank0` and `map-rank0` the messages rank 0 "
           "sent and received per 1,000 tasks in the MPI run of that workload (flat: one worker "
           "per rank; leaders: one per node). Bold rows are mpx; `steal max` is the highest CPU "
           "steal seen while one of the row's runs ran, `load max` the highest 1-minute load "
           "average when one started (above the core count: other programs competed for the "
           "CPUs; steal only counts the hypervisor's share)."]
    if pngs:
        md += ["", "## Plots", ""] + ["![%s](%s)" % (p[:-4], p) for p in pngs]
    notes = strmap_check(results)
    notes += ["skipped: %s: %s" % kv for kv in skipped.items()]
    notes += ["failed: %s: %s" % (k, "; ".join(sorted(set(v)))) for k, v in errors.items()]
    if plot_err:
        notes.append(plot_err)
    if notes:
        md += ["", "## Notes", ""] + ["- " + n for n in notes]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("mpx-bench report: wrote %s (%d figures, %d plot(s))%s" % (
        os.path.join(out, "report.md"), len(agg), len(pngs),
        "; an mpx command failed (see Notes)" if failed else ""))
    return 1 if failed or not agg else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
