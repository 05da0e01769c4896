/* farm.h: the shared types of mpx-farm, a task farm for batch scripts built on mpx.
 *
 * mpx-farm reads a list of shell commands (a task file, or a command template over argument
 * lines), runs each with /bin/sh -c as a child of an mpx worker (a thread locally, a forked worker
 * process with --backend processes, a worker rank under mpirun/srun) and records every attempt in
 * a crash-safe journal. The pieces, one file each:
 *   main.c      command line, subcommands (run, status, cat, joblog)
 *   taskfile.c  task files, directives (PREFIX, SUFFIX, REPEAT, BARRIER, CORES) and templates
 *   record.c    the command and result records that cross to a worker and back (bounds-checked)
 *   run.c       the mpx task: spawn, environment, timeout (TERM, grace, KILL), output capture
 *   sched.c     the coordinator: submission window, retries, halt, deadline, signals
 *   journal.c   the append-only journal, resume, the joblog and the status file
 *   output.c    grouped and tagged output, the pack files and `mpx-farm cat`
 *   progress.c  the progress bar or batch-log lines, and `mpx-farm status`
 *   gpus.c      the GPUs hwloc sees, split between slots
 * Only the coordinator (the main thread of rank 0) touches tasks, the journal and the terminal;
 * workers see nothing but the command record they are sent. */
#ifndef MPX_FARM_H
#define MPX_FARM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mpx/mpx.h"

/* Exit status for bad input (usage, unreadable or malformed task file): nothing has run. */
enum { FARM_EXIT_USAGE = 2 };

/* ---- tasks (taskfile.c) ---------------------------------------------------------------------- */

typedef struct farm_task {
  long seq;      /* 1-based position among the tasks: the joblog's Seq, the journal's key */
  long line;     /* line of the task file (or argument line) it came from, 1-based */
  int repeat;    /* REPEAT index, -1 when not repeated */
  int cores;     /* cores it needs (CORES directive), >= 1 */
  char *cmd;     /* the full command: PREFIX + line + SUFFIX, or the filled-in template */
  char *tag;     /* what --tag prints before each output line (the argument, or the command) */
  uint64_t hash; /* FNV-1a of cmd: resume matches seq AND this */
  /* run state (sched.c) */
  int state;     /* FARM_T_* */
  int attempts;  /* attempts started, this run and earlier ones (from the journal) */
  int tries;     /* attempts started in this run (what --retries bounds) */
  int lost;      /* attempts that ended with the worker lost */
  int last_exit; /* exit value of the last attempt */
} farm_task;

enum { FARM_T_TODO = 0, FARM_T_RUNNING, FARM_T_OK, FARM_T_FAILED, FARM_T_SKIPPED };

/* A BARRIER: tasks with seq > before wait until every task with seq <= before is done. */
typedef struct farm_barrier {
  long before; /* number of tasks before it */
  long line;   /* its line in the task file */
  int check;   /* BARRIER CHECK: stop the run if any task before it failed */
} farm_barrier;

typedef struct farm_list {
  farm_task *tasks;
  long n, cap;
  farm_barrier *barriers;
  long nbarriers, bcap;
} farm_list;

/* Where tasks come from. */
typedef struct farm_input {
  const char *taskfile; /* a task file or "-"; NULL in template mode */
  const char *tmpl;     /* the command template (template mode) */
  const char *argfile;  /* -a FILE ("-" for stdin); NULL: ::: args or stdin */
  char **args;          /* ::: arguments */
  int nargs;
  int core_counts; /* task file lines are "N,command" (pylauncher): N cores each */
} farm_input;

/* Read the tasks. On bad input returns -1 after writing one line "mpx-farm: FILE:LINE: what" to
 * stderr. */
int farm_list_load(const farm_input *in, farm_list *out);
void farm_list_free(farm_list *l);
uint64_t farm_hash(const char *s);

/* ---- records (record.c) ---------------------------------------------------------------------- */

enum { FARM_OUT_GROUP = 0, FARM_OUT_UNGROUP, FARM_OUT_RESULTS, FARM_OUT_PACK };

enum { FARM_BIND = 1, FARM_SLOT_WORKER = 2 };

/* What the coordinator sends for one attempt. Strings point into the record's bytes. */
typedef struct farm_cmd {
  int64_t seq, line;
  int32_t repeat, attempt, cores, out_mode;
  int32_t slots;    /* slots per worker process: binding and GPU split */
  int32_t bind;     /* 1: bind each slot to a core (hwloc), MPX_FARM_CPUSET */
  double timeout;   /* seconds, 0: none */
  double grace;     /* seconds between TERM and KILL */
  double kill_at;   /* epoch seconds: TERM then (deadline), 0: none */
  const char *cmd;  /* NUL-terminated */
  const char *dir;  /* --results or --pack directory, "" otherwise */
  const char *gpus; /* --gpus list to split between slots, "" otherwise */
} farm_cmd;

/* How an attempt ended. */
enum {
  FARM_R_OK = 0,   /* exit 0 */
  FARM_R_FAIL,     /* non-zero exit or a signal */
  FARM_R_TIMEOUT,  /* killed by --timeout */
  FARM_R_SPAWN,    /* could not start /bin/sh */
  FARM_R_DEADLINE, /* stopped before the walltime ends (resume runs it again) */
  FARM_R_STOPPED,  /* stopped by SIGTERM/SIGINT or halt now (resume runs it again) */
  FARM_R_LOST,     /* the worker running it died (coordinator-side only) */
  FARM_R_NOUTCOMES
};
extern const char *const farm_outcome_names[FARM_R_NOUTCOMES];

/* What comes back. Pointers point into the result bytes (valid while the future is held). */
typedef struct farm_res {
  int64_t seq;
  int32_t attempt, outcome, exitval, sig, pid, rank, slot;
  double start, runtime;
  uint64_t out_len, err_len; /* bytes the task wrote to stdout / stderr */
  uint64_t pack_off;         /* FARM_OUT_PACK: offset of its bytes in `where` */
  const char *host;
  const char *where;               /* pack file name, or "" */
  const char *out, *err;           /* FARM_OUT_GROUP: the bytes themselves (not NUL-terminated) */
  uint64_t out_inline, err_inline; /* their lengths in the record */
} farm_res;

/* Encode into a malloc'd buffer (*buf, *len); 0 or -1 (out of memory). */
int farm_cmd_encode(const farm_cmd *c, void **buf, size_t *len);
/* Decode in place; 0, or -1 when the bytes are truncated or malformed. */
int farm_cmd_decode(const void *buf, size_t len, farm_cmd *c);
/* The result header + strings + output size; the task writes it with farm_res_encode. */
size_t farm_res_size(const farm_res *r);
void farm_res_encode(const farm_res *r, void *buf);
int farm_res_decode(const void *buf, size_t len, farm_res *r);

/* ---- the worker side (run.c) ----------------------------------------------------------------- */

/* Set up what every worker needs before mpx_init forks anything: the stop pipe (written by the
 * coordinator's signal handler or halt now, seen by every running task) and the base environment.
 * Returns 0 or -1. */
int farm_run_setup(void);
/* Ask every running task of this process (and of forked workers) to stop: TERM, grace, KILL. */
void farm_run_stop_all(void);

/* ---- journal (journal.c) --------------------------------------------------------------------- */

typedef struct farm_journal farm_journal;

/* What a journal knows about one seq, for resume, status and joblog. */
typedef struct farm_jentry {
  long seq;
  int attempts;   /* highest attempt number seen */
  int started;    /* an S record without a later F record: it was running when the farm died */
  int have_final; /* a final F record was seen */
  int outcome;    /* of the last F record */
  int lost;       /* F records with outcome lost */
  uint64_t hash;  /* command hash of the last record */
  double runtime; /* of the last F record */
  int exitval;
} farm_jentry;

/* Open (create) for appending; writes a header line to a new file. NULL + message on failure. */
farm_journal *farm_journal_open(const char *path, int sync_every, double sync_seconds);
/* An R record: a run of `tasks` tasks began (mode "new", "resume" or "resume-failed"). */
int farm_journal_run(farm_journal *j, long tasks, const char *mode);
int farm_journal_start(farm_journal *j, const farm_task *t, int attempt, double now);
int farm_journal_finish(farm_journal *j, const farm_task *t, const farm_res *r, int final);
void farm_journal_tick(farm_journal *j, double now); /* fdatasync when the policy says so */
void farm_journal_close(farm_journal *j);

/* Read a journal; entries indexed by seq (size *n = highest seq + 1). Torn or corrupt lines are
 * skipped (counted in *bad). -1 if the file cannot be read. */
int farm_journal_read(const char *path, farm_jentry **entries, long *n, long *bad);
/* Write GNU parallel's joblog (one line per F record) and a disBatch-style status file. */
int farm_journal_joblog(const char *journal, FILE *out);
int farm_journal_status_file(const char *journal, const char *path);
/* Parse one journal line (modified in place). Returns 1 for an F record, 0 for an S record
 * (*is_start = 1) or the header, 2 for an R record (tasks in ->line, time in ->start), -1 for a
 * torn or corrupt line. cmd points into `line`, unescaped. */
typedef struct farm_frec {
  long seq, line;
  int attempt, repeat, outcome, final, exitval, sig, pid, slot, rank;
  double start, runtime;
  uint64_t out_len, err_len, hash;
  char host[256];
  char *cmd;
} farm_frec;
int farm_journal_parse(char *line, farm_frec *f, int *is_start);

/* ---- output (output.c) ----------------------------------------------------------------------- */

/* Print a finished attempt's grouped output (stdout to fd 1, stderr to fd 2), each stream with one
 * write where possible, lines prefixed by "tag\t" when tag is not NULL. */
void farm_output_print(const farm_res *r, const char *tag);
/* Worker side: append out+err to this process's pack file in dir; returns file name and offset. */
int farm_pack_append(const char *dir, const char *host, const char *out, size_t olen,
                     const char *err, size_t elen, char *name, size_t namelen, uint64_t *off);
/* Coordinator side: one index line per packed attempt. */
int farm_pack_index(const char *dir, const farm_res *r);
/* `mpx-farm cat DIR SEQ`: print the last packed output of SEQ. Exit status. */
int farm_cat_main(int argc, char **argv);

/* ---- progress (progress.c) ------------------------------------------------------------------- */

typedef struct farm_progress {
  int mode;        /* 0 off, 1 bar (terminal), 2 lines (batch log) */
  double interval; /* lines: seconds between lines */
  double t0, last;
  long total;
} farm_progress;

void farm_progress_init(farm_progress *p, int mode, double interval, long total, double now);
void farm_progress_update(farm_progress *p, double now, long done, long failed, long running,
                          int force);
void farm_progress_end(farm_progress *p);
int farm_status_main(int argc, char **argv);

/* ---- coordinator (sched.c) ------------------------------------------------------------------- */

typedef struct farm_opts {
  farm_input in;
  int jobs;        /* slots per worker process (threads, MPI rank); 0: usable cores */
  int rank0_slots; /* MPI: tasks rank 0 runs itself; -1: jobs - 1 */
  mpx_backend backend;
  const char *journal; /* NULL: none */
  const char *joblog;  /* written from the journal at the end */
  const char *status_file;
  int resume; /* 1 --resume, 2 --resume-failed */
  int retries;
  int retry_any, retry_lost, retry_timeout; /* --retry-on policies */
  int retry_codes[32];
  int nretry_codes;
  int poison;     /* worker losses after which a task is a poison task */
  double timeout; /* seconds, or a percentage of the median when timeout_pct */
  int timeout_pct;
  double grace;
  int halt_now;     /* 1 now, 0 soon */
  double halt_fail; /* count, or a percentage when halt_pct; 0: never */
  int halt_pct;
  long max_fails;  /* 0: none */
  double deadline; /* epoch seconds, 0: none */
  double deadline_margin;
  double expected; /* --expected-runtime; 0: the median of successes */
  int out_mode;
  const char *out_dir;
  int tag;
  int progress; /* -1 auto, 0 off, 1 bar, 2 lines */
  double progress_interval;
  int bind;
  const char *gpus;
  int dry_run;
  int verbose;
} farm_opts;

/* Run the farm (rank 0 / the only process). Returns the exit status. */
int farm_run(farm_opts *o, farm_list *l);

double farm_now(void); /* epoch seconds */
/* GPUs hwloc sees on this node ("0,1,..." in out), unless CUDA/ROCR_VISIBLE_DEVICES are set;
 * returns how many (gpus.c). */
int farm_gpus_detect(char *out, size_t len);
void farm_die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
