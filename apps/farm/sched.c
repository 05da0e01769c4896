/* sched.c: the coordinator of mpx-farm: which task runs next, what an ending means, when to stop.
 *
 * It runs on the main thread of the only process (threads and processes backends) or of rank 0
 * (MPI). Tasks are submitted to an mpx executor as command records while the cores they need are
 * free (CORES directive), plus, on the processes and MPI backends, as many again queued ahead so a
 * worker never waits for the round trip. Under MPI, rank 0 is no worker of the MPI executor, so
 * a second, threads executor runs --rank0-slots tasks there (default -j minus one, leaving a core
 * to the coordinator) when the worker ranks are full. Each future gets a done-callback that appends
 * it to a mutex-protected FIFO and signals a condition variable; the main loop sleeps on it (at
 * most 100 ms, so signals, progress and the walltime are looked at even when nothing ends) and
 * handles endings one by one: F record in the journal first, then output, then retries and halts.
 * Rules:
 *  - BARRIER: a task after a barrier is submitted only when every task before it is final;
 *    BARRIER CHECK stops the run there if any of them failed.
 *  - Retries (--retries N, --retry-on): a failed attempt whose kind the policy lists runs again, at
 *    most N more times in this run; an attempt whose worker was lost counts toward --poison K: a
 *    task that lost K workers is a poison task and is not retried again.
 *  - --timeout S or P%: sent with the command; P% of the median runtime of the successful tasks
 *    so far (no limit until three succeeded).
 *  - --halt now|soon,fail=N|N% and --max-fails N: after that many final failures nothing new
 *    starts and queued tasks are cancelled; `now` also stops the running ones (TERM, grace, KILL)
 *    through the stop pipe (run.c), which reaches this process and its forked workers: under MPI
 *    the worker ranks' tasks run to their end (mpx gives no way to reach a busy rank).
 *  - Walltime (--deadline or SLURM_JOB_END_TIME): nothing starts once now + the expected runtime
 *    (--expected-runtime, else the median) passes end - margin, and running tasks are sent TERM at
 *    end - margin by their worker; such attempts are journalled as not final, so --resume in the
 *    next job runs them again.
 *  - SIGTERM/SIGINT: stop as halt now, close the journal, print a summary, exit 128+signal.
 * Exit status: 0 when every task succeeded; 128+signal when stopped by one; the exit value of the
 * task that triggered a halt; else the number of failed (or, at a walltime, unfinished) tasks,
 * at most 101.
 * Locking: the done FIFO's mutex (callbacks run on worker or dispatcher threads) is the only lock;
 * tasks, the journal and the terminal belong to the main thread. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "farm.h"

typedef struct inflight {
  mpx_future *f;
  long ti;
  int attempt, cores;
  int local; /* 1: on rank 0's own threads (--rank0-slots) */
  void *buf;
  struct inflight *next;                /* in the done FIFO */
  struct inflight *prev_all, *next_all; /* in the list of everything sent */
} inflight;

static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv;
static inflight *done_head, *done_tail;
static volatile sig_atomic_t got_signal;

static int on_done(mpx_future *f, void *arg) {
  inflight *x = arg;
  (void)f;
  pthread_mutex_lock(&done_mu);
  x->next = NULL;
  if (done_tail)
    done_tail->next = x;
  else
    done_head = x;
  done_tail = x;
  pthread_cond_signal(&done_cv);
  pthread_mutex_unlock(&done_mu);
  return 0;
}

static void on_signal(int sig) {
  if (!got_signal) got_signal = sig;
  farm_run_stop_all();
}

double farm_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct farm_state {
  farm_opts *o;
  farm_list *l;
  mpx_executor *ex;
  mpx_executor *local; /* MPI only: threads on rank 0 (--rank0-slots), or NULL */
  int local_slots, used_local;
  const mpx_task *task;
  farm_journal *j;
  int total_slots, slots_per_worker, limit;
  int slot_is_worker; /* processes backend: one slot per worker process */
  int used_cores;
  inflight *all;
  long ninflight;
  long next;    /* next task index to look at */
  long *retryq; /* FIFO of task indices to run again */
  long rq_head, rq_tail, rq_cap;
  long bar;       /* the barrier not passed yet */
  long *seg_left; /* per segment: tasks not final */
  long ok, failed, interrupted, to_run;
  double *ok_rt; /* runtimes of successes, for the median */
  long n_ok_rt, median_at;
  double median;
  int stopping; /* 1 halt soon / barrier check / deadline, 2 halt now or signal */
  int halt_exit, deadline_hit, check_failed, journal_failed;
  farm_progress prog;
} farm_state;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median_runtime(farm_state *s) {
  if (s->n_ok_rt == 0) return 0;
  if (s->median_at != s->n_ok_rt && (s->n_ok_rt < 64 || s->n_ok_rt >= s->median_at * 11 / 10)) {
    double *c = malloc((size_t)s->n_ok_rt * sizeof *c);
    if (c) {
      memcpy(c, s->ok_rt, (size_t)s->n_ok_rt * sizeof *c);
      qsort(c, (size_t)s->n_ok_rt, sizeof *c, cmp_double);
      s->median = c[s->n_ok_rt / 2];
      s->median_at = s->n_ok_rt;
      free(c);
    }
  }
  return s->median;
}

static long segment_of(const farm_list *l, long ti) {
  long k = 0;
  while (k < l->nbarriers && ti >= l->barriers[k].before) k++;
  return k;
}

static void make_final(farm_state *s, farm_task *t, int state) {
  t->state = state;
  s->seg_left[segment_of(s->l, t->seq - 1)]--;
  if (state == FARM_T_OK)
    s->ok++;
  else if (state == FARM_T_FAILED)
    s->failed++;
}

static void stop_all(farm_state *s, int how) {
  if (how > s->stopping) s->stopping = how;
  /* queued: withdrawn. Running, when stopping now: the cancel answers MPX_ESTATE and asks the
   * task to stop (mpx_task_should_stop), which reaches tasks on MPI ranks too; farm_run_stop_all
   * reaches those in this process and its forked workers at once */
  for (inflight *x = s->all; x; x = x->next_all)
    if (how == 2 || mpx_future_running(x->f) == 0) (void)mpx_future_cancel(x->f);
  if (how == 2) farm_run_stop_all();
}

/* ---- submitting ------------------------------------------------------------------------------ */

static int submit(farm_state *s, long ti, int local) {
  farm_opts *o = s->o;
  farm_task *t = &s->l->tasks[ti];
  int attempt = ++t->attempts;
  t->tries++;
  double timeout = o->timeout;
  if (o->timeout_pct) timeout = s->n_ok_rt >= 3 ? median_runtime(s) * o->timeout / 100.0 : 0;
  if (timeout > 0 && timeout < 0.001) timeout = 0.001;
  farm_cmd c = {.seq = t->seq,
                .line = t->line,
                .repeat = t->repeat,
                .attempt = attempt,
                .cores = t->cores,
                .out_mode = o->out_mode,
                .slots = local ? s->local_slots : s->slots_per_worker,
                .bind = (o->bind ? FARM_BIND : 0) |
                        (s->slot_is_worker && !local ? FARM_SLOT_WORKER : 0),
                .timeout = timeout,
                .grace = o->grace,
                .kill_at = o->deadline > 0 ? o->deadline - o->deadline_margin : 0,
                .cmd = t->cmd,
                .dir = o->out_dir ? o->out_dir : "",
                .gpus = o->gpus ? o->gpus : ""};
  inflight *x = calloc(1, sizeof *x);
  size_t len;
  if (!x || farm_cmd_encode(&c, &x->buf, &len) < 0) {
    free(x);
    fprintf(stderr, "mpx-farm: out of memory\n");
    return -1;
  }
  x->ti = ti, x->attempt = attempt, x->cores = t->cores, x->local = local;
  if (s->j && farm_journal_start(s->j, t, attempt, farm_now()) < 0) {
    fprintf(stderr, "mpx-farm: cannot write the journal: %s\n", strerror(errno));
    free(x->buf), free(x);
    return -1;
  }
  int rc = mpx_submit_task(local ? s->local : s->ex, s->task, x->buf, len, NULL, &x->f);
  if (rc) {
    fprintf(stderr, "mpx-farm: submit failed: %s (%s)\n", mpx_strerror(rc), mpx_errmsg());
    free(x->buf), free(x);
    return -1;
  }
  t->state = FARM_T_RUNNING;
  if (local)
    s->used_local += t->cores;
  else
    s->used_cores += t->cores;
  s->ninflight++;
  x->next_all = s->all;
  if (s->all) s->all->prev_all = x;
  s->all = x;
  mpx_future_add_done_callback(x->f, on_done, x);
  return 0;
}

/* The next task to start, or -1. Retries first; then the task list, up to the next barrier. */
static long pick(farm_state *s) {
  if (s->rq_head < s->rq_tail) return s->retryq[s->rq_head % s->rq_cap];
  farm_list *l = s->l;
  while (s->next < l->n && l->tasks[s->next].state != FARM_T_TODO) s->next++;
  if (s->next >= l->n) return -1;
  while (s->bar < l->nbarriers && s->next >= l->barriers[s->bar].before) {
    for (long k = 0; k <= s->bar; k++)
      if (s->seg_left[k] > 0) return -1; /* wait for the barrier */
    if (l->barriers[s->bar].check && s->failed > 0) {
      fprintf(stderr,
              "mpx-farm: BARRIER CHECK on line %ld: %ld task(s) failed before it; "
              "stopping\n",
              l->barriers[s->bar].line, s->failed);
      s->check_failed = 1;
      stop_all(s, 1);
      return -1;
    }
    s->bar++;
  }
  return s->next;
}

static int fill(farm_state *s) {
  farm_opts *o = s->o;
  while (!s->stopping) {
    long ti = pick(s);
    if (ti < 0) return 0;
    farm_task *t = &s->l->tasks[ti];
    int local = 0;
    if (s->used_cores > 0 && s->used_cores + t->cores > s->limit) {
      if (!s->local || (s->used_local > 0 && s->used_local + t->cores > s->local_slots)) return 0;
      local = 1;
    }
    if (o->deadline > 0) {
      double exp = o->expected > 0 ? o->expected : median_runtime(s);
      if (farm_now() + exp > o->deadline - o->deadline_margin) {
        if (!s->deadline_hit)
          fprintf(stderr,
                  "mpx-farm: the walltime ends in %.0f s: no new task starts (resume in "
                  "the next job with --resume)\n",
                  o->deadline - farm_now());
        s->deadline_hit = 1;
        s->stopping = 1;
        return 0;
      }
    }
    if (s->rq_head < s->rq_tail && s->retryq[s->rq_head % s->rq_cap] == ti)
      s->rq_head++;
    else
      s->next++;
    if (submit(s, ti, local) < 0) return -1;
  }
  return 0;
}

/* ---- endings -----------------------------------------------------------------------------------
 */

static int retry_allowed(farm_state *s, farm_task *t, const farm_res *r) {
  farm_opts *o = s->o;
  if (s->stopping || t->tries > o->retries) return 0;
  if (r->outcome == FARM_R_LOST) return (o->retry_any || o->retry_lost) && t->lost < o->poison;
  if (o->retry_any) return 1;
  if (r->outcome == FARM_R_TIMEOUT) return o->retry_timeout;
  if (r->outcome == FARM_R_FAIL && r->sig == 0)
    for (int i = 0; i < o->nretry_codes; i++)
      if (o->retry_codes[i] == r->exitval) return 1;
  return 0;
}

static void push_retry(farm_state *s, long ti) {
  if (s->rq_tail - s->rq_head == s->rq_cap) {
    long cap = s->rq_cap ? s->rq_cap * 2 : 64;
    long *nq = malloc((size_t)cap * sizeof *nq);
    if (!nq) return; /* not retried; the failure stands */
    for (long i = s->rq_head; i < s->rq_tail; i++) nq[i - s->rq_head] = s->retryq[i % s->rq_cap];
    free(s->retryq);
    s->retryq = nq, s->rq_tail -= s->rq_head, s->rq_head = 0, s->rq_cap = cap;
  }
  s->retryq[s->rq_tail++ % s->rq_cap] = ti;
}

static void check_halt(farm_state *s, const farm_res *r) {
  farm_opts *o = s->o;
  double limit = 0;
  if (o->halt_fail > 0)
    limit = o->halt_pct ? ceil(o->halt_fail / 100.0 * (double)s->to_run) : o->halt_fail;
  int hit = limit > 0 && (double)s->failed >= limit;
  int hit_max = o->max_fails > 0 && s->failed >= o->max_fails;
  if (!hit && !hit_max) return;
  if (s->stopping && s->halt_exit) return;
  s->halt_exit = r->exitval > 0 ? r->exitval : r->sig > 0 ? 128 + r->sig : 1;
  int now = hit && o->halt_now;
  fprintf(stderr, "mpx-farm: %ld task(s) failed: halting %s (%s)\n", s->failed,
          now ? "now: stopping the running tasks" : "soon: waiting for the running tasks",
          hit ? "--halt" : "--max-fails");
  stop_all(s, now ? 2 : 1);
}

static void handle(farm_state *s, inflight *x) {
  farm_opts *o = s->o;
  farm_task *t = &s->l->tasks[x->ti];
  const void *data;
  size_t len;
  farm_res r;
  char lost_host[256];
  int code = mpx_future_result(x->f, 0, &data, &len);
  if (code != 0 || farm_res_decode(data, len, &r) < 0) {
    const char *msg = "";
    int c2 = code;
    if (code != MPX_ECANCELLED) mpx_future_exception(x->f, 0, &c2, &msg);
    r = (farm_res){.seq = t->seq,
                   .attempt = x->attempt,
                   .exitval = -1,
                   .host = "",
                   .where = "",
                   .start = farm_now()};
    if (code == MPX_ECANCELLED)
      r.outcome = FARM_R_STOPPED;
    else if (code == MPX_EWORKER_LOST) {
      r.outcome = FARM_R_LOST;
      /* "... lost with worker 1 on HOST: pid PID was killed by signal N (...)" */
      const char *sg = msg ? strstr(msg, "by signal ") : NULL;
      if (sg) r.sig = atoi(sg + 10);
      const char *on = msg ? strstr(msg, " on ") : NULL, *pid = msg ? strstr(msg, ": pid ") : NULL;
      if (on && pid && pid > on + 4 && pid - (on + 4) < (long)sizeof lost_host) {
        snprintf(lost_host, sizeof lost_host, "%.*s", (int)(pid - (on + 4)), on + 4);
        r.host = lost_host;
        r.pid = atoi(pid + 6);
      }
    } else
      r.outcome = FARM_R_FAIL;
    if (code != MPX_ECANCELLED && !(s->stopping == 2 && code == MPX_EWORKER_LOST))
      fprintf(stderr, "mpx-farm: task %ld (line %ld) attempt %d: %s%s%s\n", t->seq, t->line,
              x->attempt, code ? mpx_err_name(code) : "malformed result record", *msg ? ": " : "",
              msg ? msg : "");
  }
  /* A worker that died while the farm stops (Ctrl-C reaches forked workers too) was stopped, not
   * crashed by its task: journal it as stopped, so resume runs it again. */
  if (r.outcome == FARM_R_LOST && (got_signal || s->stopping == 2)) r.outcome = FARM_R_STOPPED;
  if (r.outcome == FARM_R_LOST) t->lost++;
  t->last_exit = r.exitval;
  int final = 1, retry = 0;
  if (r.outcome == FARM_R_STOPPED || r.outcome == FARM_R_DEADLINE)
    final = 0;
  if (r.outcome == FARM_R_DEADLINE && !s->stopping) /* a worker saw the end: so does fill() */
    s->deadline_hit = 1, s->stopping = 1;
  else if (r.outcome != FARM_R_OK && retry_allowed(s, t, &r))
    final = 0, retry = 1;
  if (r.outcome == FARM_R_LOST && !retry && t->lost >= o->poison && !s->stopping)
    fprintf(stderr,
            "mpx-farm: task %ld (line %ld) is a poison task: it lost its worker %d "
            "time(s); not retried\n",
            t->seq, t->line, t->lost);
  if (s->j && farm_journal_finish(s->j, t, &r, final) < 0) {
    /* without its journal the run cannot be resumed safely: start nothing more */
    fprintf(stderr, "mpx-farm: cannot write the journal: %s; stopping\n", strerror(errno));
    s->journal_failed = 1;
    stop_all(s, 1);
  }
  if (o->out_mode == FARM_OUT_PACK && r.where[0]) farm_pack_index(o->out_dir, &r);
  if (r.out_inline || r.err_inline) farm_output_print(&r, o->tag ? t->tag : NULL);
  if (x->local)
    s->used_local -= x->cores;
  else
    s->used_cores -= x->cores;
  s->ninflight--;
  if (r.outcome == FARM_R_OK) {
    double *n = realloc(s->ok_rt, (size_t)(s->n_ok_rt + 1) * sizeof *n);
    if (n) s->ok_rt = n, s->ok_rt[s->n_ok_rt++] = r.runtime;
    make_final(s, t, FARM_T_OK);
  } else if (retry) {
    t->state = FARM_T_TODO;
    push_retry(s, x->ti);
  } else if (!final) {
    t->state = FARM_T_TODO;
    s->interrupted++;
  } else {
    make_final(s, t, FARM_T_FAILED);
    check_halt(s, &r);
  }
  /* unlink and free */
  if (x->prev_all)
    x->prev_all->next_all = x->next_all;
  else
    s->all = x->next_all;
  if (x->next_all) x->next_all->prev_all = x->prev_all;
  mpx_future_release(x->f);
  free(x->buf);
  free(x);
}

static inflight *take_done(double wait) {
  pthread_mutex_lock(&done_mu);
  if (!done_head && wait > 0) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long ns = ts.tv_nsec + (long)(wait * 1e9);
    ts.tv_sec += ns / 1000000000L, ts.tv_nsec = ns % 1000000000L;
    pthread_cond_timedwait(&done_cv, &done_mu, &ts);
  }
  inflight *x = done_head;
  if (x) {
    done_head = x->next;
    if (!done_head) done_tail = NULL;
  }
  pthread_mutex_unlock(&done_mu);
  return x;
}

/* ---- resume ------------------------------------------------------------------------------------
 */

static int apply_journal(farm_state *s) {
  farm_opts *o = s->o;
  struct stat st;
  if (stat(o->journal, &st) < 0 || st.st_size == 0) return 0;
  farm_jentry *e;
  long n, bad;
  if (farm_journal_read(o->journal, &e, &n, &bad) < 0) {
    fprintf(stderr, "mpx-farm: cannot read the journal %s: %s\n", o->journal, strerror(errno));
    return -1;
  }
  long known = 0, skipped = 0, changed = 0;
  for (long q = 1; q < n; q++) known += e[q].seq != 0;
  if (known && !o->resume) {
    fprintf(stderr,
            "mpx-farm: the journal %s already records %ld task(s): add --resume or "
            "--resume-failed to continue that run, or remove the file\n",
            o->journal, known);
    free(e);
    return -1;
  }
  for (long i = 0; i < s->l->n && i + 1 < n; i++) {
    farm_task *t = &s->l->tasks[i];
    farm_jentry *je = &e[i + 1];
    if (!je->seq) continue;
    t->attempts = je->attempts;
    if (je->hash != t->hash) {
      if (++changed <= 20)
        fprintf(stderr,
                "mpx-farm: task %ld (line %ld) changed since the journal: running it "
                "again\n",
                t->seq, t->line);
      continue;
    }
    if (!je->have_final || je->started) continue;
    if (je->outcome == FARM_R_OK)
      make_final(s, t, FARM_T_OK), skipped++;
    else if (o->resume == 1)
      make_final(s, t, FARM_T_FAILED), skipped++;
  }
  if (changed > 20)
    fprintf(stderr,
            "mpx-farm: ... %ld task(s) in all changed since the journal (is it the journal "
            "of this task file?)\n",
            changed);
  if (n - 1 > s->l->n)
    fprintf(stderr, "mpx-farm: the journal has tasks beyond the %ld of the task file; ignored\n",
            s->l->n);
  if (bad && o->verbose)
    fprintf(stderr, "mpx-farm: %ld torn or corrupt journal line(s) ignored\n", bad);
  if (o->verbose)
    fprintf(stderr, "mpx-farm: resume: %ld task(s) done before, %ld changed, %ld to run\n", skipped,
            changed, s->l->n - skipped);
  free(e);
  return 0;
}

/* ---- the run -----------------------------------------------------------------------------------
 */

int farm_run(farm_opts *o, farm_list *l) {
  farm_state s = {.o = o, .l = l};
  int status = 0;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&done_cv, &ca);
  s.seg_left = calloc((size_t)l->nbarriers + 1, sizeof *s.seg_left);
  if (!s.seg_left) return 1;
  for (long i = 0; i < l->n; i++) s.seg_left[segment_of(l, i)]++;
  if (o->journal && apply_journal(&s) < 0) return free(s.seg_left), FARM_EXIT_USAGE;
  s.to_run = l->n - s.ok - s.failed;

  int uniform = 1, maxc = 1;
  for (long i = 0; i < l->n; i++) {
    if (l->tasks[i].cores != 1) uniform = 0;
    if (l->tasks[i].cores > maxc) maxc = l->tasks[i].cores;
  }
  mpx_topo_info tinfo = {.default_workers = 1};
  const mpx_topology *topo;
  if (mpx_topology_get(&topo) == 0) mpx_topology_info(topo, &tinfo);
  mpx_options eo = {.backend = o->backend};
  if (o->backend != MPX_BACKEND_MPI) eo.workers = o->jobs;
  eo.threads_per_rank = o->jobs;
  int rc = mpx_executor_create(&s.ex, &eo);
  /* Under MPI mpx sends a rank one task per thread when tasks take a millisecond or more, so the
   * next task of a slot waits for a round trip to rank 0 (about 0.3-0.5 ms here). Giving ranks
   * more threads than slots (the slot pool of run.c would still cap what runs) was tried: no gain
   * measurable on this machine, and a task queued in a rank can no longer be withdrawn by a halt,
   * so it is not done. */
  if (rc == 0 && eo.workers != 0 && mpx_executor_backend(s.ex) == MPX_BACKEND_MPI) {
    mpx_executor_destroy(s.ex), s.ex = NULL;
    eo.workers = 0;
    rc = mpx_executor_create(&s.ex, &eo);
  }
  if (rc) {
    fprintf(stderr, "mpx-farm: cannot start the workers: %s (%s)\n", mpx_strerror(rc),
            mpx_errmsg());
    return free(s.seg_left), 1;
  }
  mpx_task_find("mpx_farm_run", &s.task);
  s.total_slots = mpx_executor_workers(s.ex);
  if (s.total_slots < 1) s.total_slots = 1;
  int backend = mpx_executor_backend(s.ex);
  s.slot_is_worker = backend == MPX_BACKEND_PROCESSES;
  /* MPI: a rank's slots (-j, else its cores: rank 0's count stands in for the others) */
  s.slots_per_worker =
      backend == MPX_BACKEND_MPI ? (o->jobs > 0 ? o->jobs : tinfo.default_workers) : s.total_slots;
  s.limit = s.total_slots + (uniform && backend != MPX_BACKEND_THREADS ? s.total_slots : 0);
  if (backend == MPX_BACKEND_MPI && o->rank0_slots != 0) {
    int n = o->rank0_slots > 0 ? o->rank0_slots
            : o->jobs > 0      ? o->jobs - 1
                               : tinfo.default_workers - 1;
    if (n > 0 && mpx_executor_create(
                     &s.local, &(mpx_options){.backend = MPX_BACKEND_THREADS, .workers = n}) == 0)
      s.local_slots = n;
  }
  if (maxc > s.total_slots)
    fprintf(stderr,
            "mpx-farm: a task needs %d cores but the farm has %d slots: such tasks run "
            "alone\n",
            maxc, s.total_slots);
  if (o->verbose)
    fprintf(stderr, "mpx-farm: %ld task(s) on %d slot(s), %s backend, %d on rank 0\n", l->n,
            s.total_slots + s.local_slots, mpx_backend_name((mpx_backend)backend), s.local_slots);

  if (o->journal) {
    s.j = farm_journal_open(o->journal, 1000, 1.0);
    if (!s.j) {
      mpx_executor_destroy(s.ex);
      if (s.local) mpx_executor_destroy(s.local);
      return free(s.seg_left), 1;
    }
    farm_journal_run(s.j, l->n, o->resume == 2 ? "resume-failed" : o->resume ? "resume" : "new");
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  double t0 = farm_now();
  int pmode = o->progress < 0 ? (isatty(2) ? 1 : 2) : o->progress;
  farm_progress_init(&s.prog, pmode, o->progress_interval, s.to_run, t0);
  long base_ok = s.ok, base_failed = s.failed;
  for (;;) {
    if (got_signal && s.stopping < 2) {
      fprintf(stderr, "\nmpx-farm: got signal %d: stopping the running tasks\n", (int)got_signal);
      stop_all(&s, 2);
    }
    if (fill(&s) < 0) {
      stop_all(&s, 2);
      status = 1;
    }
    if (s.ninflight == 0) break;
    inflight *x = take_done(0.1);
    for (int k = 0; x; k++) {
      handle(&s, x);
      if (!s.stopping && k % 4 == 3 && fill(&s) < 0) stop_all(&s, 2), status = 1;
      x = take_done(0);
    }
    double now = farm_now();
    farm_journal_tick(s.j, now);
    farm_progress_update(&s.prog, now, s.ok - base_ok, s.failed - base_failed, s.ninflight, 0);
  }
  farm_progress_update(&s.prog, farm_now(), s.ok - base_ok, s.failed - base_failed, 0, 1);
  farm_progress_end(&s.prog);
  mpx_executor_destroy(s.ex);
  if (s.local) mpx_executor_destroy(s.local);
  farm_journal_close(s.j);
  if (o->journal) {
    if (o->joblog) {
      FILE *f = fopen(o->joblog, "w");
      if (!f || farm_journal_joblog(o->journal, f) < 0 || fclose(f) != 0)
        fprintf(stderr, "mpx-farm: cannot write the joblog %s\n", o->joblog);
    }
    if (o->status_file && farm_journal_status_file(o->journal, o->status_file) < 0)
      fprintf(stderr, "mpx-farm: cannot write the status file %s\n", o->status_file);
  }
  double el = farm_now() - t0;
  long left = l->n - s.ok - s.failed, ran = s.ok - base_ok + s.failed - base_failed;
  if (got_signal || s.stopping || s.failed || left || o->verbose || pmode == 1)
    fprintf(stderr,
            "mpx-farm: %ld task(s): %ld ok, %ld failed, %ld not done; %.2f s, %.1f tasks/s"
            "%s\n",
            l->n, s.ok, s.failed, left, el, el > 0 ? (double)ran / el : 0.0,
            left && o->journal ? " (run again with --resume to finish)" : "");
  free(s.seg_left), free(s.ok_rt), free(s.retryq);
  if (status || s.journal_failed) return status ? status : 1;
  if (got_signal) return 128 + got_signal;
  if (s.halt_exit) return s.halt_exit;
  long bad = s.failed + left;
  return bad > 101 ? 101 : (int)bad;
}
