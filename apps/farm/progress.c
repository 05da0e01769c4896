/* progress.c: how far a farm is, seen from its own terminal or batch log, or from another shell.
 *
 *  - On a terminal (stderr is a tty), a bar redrawn at most five times a second: done, failed,
 *    running, tasks/s and ETA. In a batch log, one line every --progress-interval seconds (default
 *    30) instead, so a log stays readable.
 *  - `mpx-farm status JOURNAL` reads a journal, possibly while a farm appends to it, and prints
 *    the counts (ok, failed, running, retried attempts), the rate, the failures and the slowest
 *    tasks. It only reads; torn lines are skipped.
 * Single-threaded: the coordinator calls the progress functions; status is its own command. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "farm.h"

void farm_progress_init(farm_progress *p, int mode, double interval, long total, double now) {
  *p = (farm_progress){.mode = mode,
                       .interval = interval > 0 ? interval : 30,
                       .t0 = now,
                       .last = now,
                       .total = total};
}

static void fmt_eta(double s, char *b, size_t n) {
  if (s < 0 || s > 1e7)
    snprintf(b, n, "?");
  else if (s >= 3600)
    snprintf(b, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
  else if (s >= 60)
    snprintf(b, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
  else
    snprintf(b, n, "%ds", (int)s);
}

void farm_progress_update(farm_progress *p, double now, long done, long failed, long running,
                          int force) {
  if (p->mode == 0) return;
  double gap = p->mode == 1 ? 0.2 : p->interval;
  if (!force && now - p->last < gap) return;
  if (force && p->mode == 2) return; /* the summary line says it all */
  p->last = now;
  double el = now - p->t0, rate = el > 0 ? (double)(done + failed) / el : 0;
  long left = p->total - done - failed;
  char eta[32];
  fmt_eta(rate > 0 ? (double)left / rate : -1, eta, sizeof eta);
  if (p->mode == 1) {
    int width = 30,
        fill = p->total > 0 ? (int)((double)(done + failed) * width / (double)p->total) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] %ld/%ld done, %ld failed, %ld running, %.1f tasks/s, ETA %s \033[K",
            bar, done + failed, p->total, failed, running, rate, eta);
  } else {
    time_t t = (time_t)now;
    struct tm tm;
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
    fprintf(stderr, "mpx-farm: %s %ld/%ld done, %ld failed, %ld running, %.1f tasks/s, ETA %s\n",
            ts, done + failed, p->total, failed, running, rate, eta);
  }
  fflush(stderr);
}

void farm_progress_end(farm_progress *p) {
  if (p->mode == 1) fputc('\n', stderr);
}

/* ---- mpx-farm status ------------------------------------------------------------------------- */

typedef struct st_task {
  int started, final, outcome, exitval, sig, attempts;
  double runtime;
  char *cmd;
} st_task;

int farm_status_main(int argc, char **argv) {
  if (argc != 2 || strcmp(argv[1], "--help") == 0) {
    FILE *f = argc == 2 ? stdout : stderr;
    fprintf(f, "usage: mpx-farm status JOURNAL\n"
               "Summarise a run from its journal (while it runs, or after): counts, rate,\n"
               "failures and the slowest tasks.\n");
    return f == stdout ? 0 : FARM_EXIT_USAGE;
  }
  FILE *fp = fopen(argv[1], "r");
  if (!fp) {
    fprintf(stderr, "mpx-farm status: cannot read %s: %s\n", argv[1], strerror(errno));
    return FARM_EXIT_USAGE;
  }
  st_task *t = NULL;
  long n = 0, cap = 0, bad = 0, tasks = 0, runs = 0, finishes = 0, retried = 0;
  double first = 0, last = 0;
  char *line = NULL;
  size_t lcap = 0;
  while (getline(&line, &lcap, fp) > 0) {
    farm_frec f;
    int st;
    int k = farm_journal_parse(line, &f, &st);
    if (k < 0) {
      bad++;
      continue;
    }
    if (k == 2) {
      tasks = f.line, runs++;
      if (!first) first = f.start;
      continue;
    }
    if (k == 0 && !st) continue; /* the header, or a record of no task */
    if (f.seq < 1 || f.seq > 100000000) continue;
    if (f.seq >= cap) {
      long nc = cap ? cap : 1024;
      while (nc <= f.seq) nc *= 2;
      st_task *nt = realloc(t, (size_t)nc * sizeof *nt);
      if (!nt) break;
      memset(nt + cap, 0, (size_t)(nc - cap) * sizeof *nt);
      t = nt, cap = nc;
    }
    if (f.seq >= n) n = f.seq + 1;
    st_task *x = &t[f.seq];
    if (f.attempt > x->attempts) x->attempts = f.attempt;
    if (st) {
      x->started = 1;
      continue;
    }
    finishes++;
    if (!f.final && f.outcome != FARM_R_OK) retried++;
    x->started = 0, x->final = f.final, x->outcome = f.outcome, x->exitval = f.exitval;
    x->sig = f.sig, x->runtime = f.runtime;
    free(x->cmd);
    x->cmd = strdup(f.cmd);
    if (f.start + f.runtime > last) last = f.start + f.runtime;
  }
  free(line);
  fclose(fp);
  long ok = 0, failed = 0, running = 0, again = 0;
  for (long i = 1; i < n; i++) {
    if (t[i].started)
      running++;
    else if (!t[i].cmd)
      continue;
    else if (t[i].outcome == FARM_R_OK)
      ok++;
    else if (t[i].final)
      failed++;
    else
      again++;
  }
  if (tasks < n - 1) tasks = n - 1;
  printf("journal   %s (%ld run%s)\n", argv[1], runs, runs == 1 ? "" : "s");
  printf("tasks     %ld: %ld ok, %ld failed, %ld running, %ld to run again, %ld not started\n",
         tasks, ok, failed, running, again, tasks - ok - failed - running - again);
  double span = last > first ? last - first : 0;
  printf("attempts  %ld finished (%ld retried or interrupted); %.1f tasks/s over %.1f s\n",
         finishes, retried, span > 0 ? (double)finishes / span : 0.0, span);
  if (bad) printf("ignored   %ld torn or corrupt line(s)\n", bad);
  int shown = 0;
  for (long i = 1; i < n && shown < 10; i++)
    if (t[i].cmd && !t[i].started && t[i].final && t[i].outcome != FARM_R_OK) {
      if (!shown++) printf("failures (first 10):\n");
      printf("  %6ld  %-7s exit %d signal %d  attempts %d  %s\n", i,
             farm_outcome_names[t[i].outcome], t[i].exitval, t[i].sig, t[i].attempts, t[i].cmd);
    }
  /* the five slowest finished tasks */
  long top[5] = {0, 0, 0, 0, 0};
  for (long i = 1; i < n; i++) {
    if (!t[i].cmd) continue;
    for (int k = 0; k < 5; k++)
      if (!top[k] || t[i].runtime > t[top[k]].runtime) {
        memmove(top + k + 1, top + k, (size_t)(4 - k) * sizeof *top);
        top[k] = i;
        break;
      }
  }
  if (top[0]) printf("slowest:\n");
  for (int k = 0; k < 5 && top[k]; k++)
    printf("  %6ld  %8.3f s  %s\n", top[k], t[top[k]].runtime, t[top[k]].cmd);
  for (long i = 0; i < n; i++) free(t[i].cmd);
  free(t);
  return 0;
}
