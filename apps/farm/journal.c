/* journal.c: mpx-farm's crash-safe journal, and the joblog and status file made from it.
 *
 * Format: a text file of records, one line each, fields separated by tabs, the last field the
 * CRC-32 (8 hex digits) of everything before it on the line:
 *   # mpx-farm journal v1                                            (first line)
 *   R  time host pid tasks mode                                      a run began (mode: new,
 *                                                                    resume, resume-failed)
 *   S  seq attempt time hash line repeat command                     an attempt was sent
 *   F  seq attempt final outcome exit signal start runtime host pid rank slot out err hash
 *      line repeat command                                           an attempt ended
 * `hash` is FNV-1a of the command text (16 hex digits); `final` is 1 when no further attempt
 * follows (ok, or a failure not retried), 0 when the task will run again (a retry, or an attempt
 * stopped by a signal or the walltime). Commands are escaped (\\ \t \n).
 *
 * Crash safety: only the coordinator writes, with O_APPEND and one write(2) per record, and a
 * record is written before the coordinator acts on it (an F record before the task counts as
 * done, before its output is printed). A write(2) that returned is in the kernel's page cache,
 * which survives the death of the process: a SIGKILL of the farm at any moment loses no record
 * that was written, and a finished attempt is written as soon as the coordinator learns of it.
 * fdatasync(2) is asked for every `sync_every` records or `sync_seconds` seconds (default 1000 /
 * 1 s, whichever first) and done at close, which bounds what a crash of the whole node can lose;
 * a syncer thread runs it, so a slow disk never stalls the coordinator. A torn or
 * corrupt line (no newline, a bad CRC: a node crash mid-write, a full disk) is ignored by every
 * reader; before appending, a file that does not end in a newline gets one, so a torn tail never
 * swallows the next record. A partial write(2) is ended with a newline and written again.
 * Resume: an attempt with an S record and no F record was running when the farm died and runs
 * again; a task whose command hash differs from the journal's is run again (and said so).
 *
 * Locking: the journal belongs to the coordinator thread; the syncer thread only calls fdatasync
 * on the descriptor, woken through `mu`/`cv`. Readers (status, joblog, resume)
 * read a copy of the file as it is, possibly while a farm appends to it. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "farm.h"

struct farm_journal {
  int fd;
  int sync_every;
  double sync_seconds, last_sync;
  long unsynced;
  char *buf;
  size_t cap;
  /* the syncer thread: fdatasync off the coordinator's path (a slow disk or a parallel file
   * system must not stall the farm); `want` and `quit` under mu */
  pthread_t syncer;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int want, quit, has_syncer;
};

static void *syncer_main(void *arg) {
  farm_journal *j = arg;
  pthread_mutex_lock(&j->mu);
  while (!j->quit) {
    if (!j->want) {
      pthread_cond_wait(&j->cv, &j->mu);
      continue;
    }
    j->want = 0;
    pthread_mutex_unlock(&j->mu);
    fdatasync(j->fd);
    pthread_mutex_lock(&j->mu);
  }
  pthread_mutex_unlock(&j->mu);
  return NULL;
}

static uint32_t crc_table[256];

static uint32_t crc32(const char *s, size_t n) {
  if (!crc_table[1])
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
      crc_table[i] = c;
    }
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) c = crc_table[(c ^ (unsigned char)s[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w, n -= (size_t)w;
  }
  return 0;
}

farm_journal *farm_journal_open(const char *path, int sync_every, double sync_seconds) {
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "mpx-farm: cannot open the journal %s: %s\n", path, strerror(errno));
    return NULL;
  }
  farm_journal *j = calloc(1, sizeof *j);
  if (!j) return close(fd), NULL;
  j->fd = fd, j->sync_every = sync_every, j->sync_seconds = sync_seconds;
  j->last_sync = farm_now();
  pthread_mutex_init(&j->mu, NULL);
  pthread_cond_init(&j->cv, NULL);
  j->has_syncer = pthread_create(&j->syncer, NULL, syncer_main, j) == 0;
  struct stat st;
  if (fstat(fd, &st) == 0 && st.st_size == 0) {
    static const char hdr[] = "# mpx-farm journal v1\n";
    if (write_all(fd, hdr, sizeof hdr - 1) < 0) goto fail;
  } else if (st.st_size > 0) {
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    char last = '\n';
    if (rfd >= 0) {
      if (pread(rfd, &last, 1, st.st_size - 1) != 1) last = '\n';
      close(rfd);
    }
    if (last != '\n' && write_all(fd, "\n", 1) < 0) goto fail;
  }
  return j;
fail:
  fprintf(stderr, "mpx-farm: cannot write the journal %s: %s\n", path, strerror(errno));
  farm_journal_close(j);
  return NULL;
}

/* Append `s` escaped to the record buffer. */
static size_t esc_len(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += (*s == '\\' || *s == '\t' || *s == '\n' || *s == '\r') ? 2 : 1;
  return n;
}

static char *esc_put(char *d, const char *s) {
  for (; *s; s++) {
    if (*s == '\\')
      *d++ = '\\', *d++ = '\\';
    else if (*s == '\t')
      *d++ = '\\', *d++ = 't';
    else if (*s == '\n')
      *d++ = '\\', *d++ = 'n';
    else if (*s == '\r')
      *d++ = '\\', *d++ = 'r';
    else
      *d++ = *s;
  }
  return d;
}

/* Write a record: head (formatted fields, ending in a tab), the escaped command, crc, newline. */
static int put_record(farm_journal *j, const char *head, const char *cmd) {
  size_t hl = strlen(head), need = hl + (cmd ? esc_len(cmd) : 0) + 16;
  if (need > j->cap) {
    char *nb = realloc(j->buf, need);
    if (!nb) return -1;
    j->buf = nb, j->cap = need;
  }
  memcpy(j->buf, head, hl);
  char *e = cmd ? esc_put(j->buf + hl, cmd) : j->buf + hl;
  if (cmd) *e++ = '\t';
  size_t n = (size_t)(e - j->buf);
  n += (size_t)snprintf(e, 11, "%08" PRIx32 "\n", crc32(j->buf, n));
  ssize_t w;
  while ((w = write(j->fd, j->buf, n)) < 0 && errno == EINTR) {
  }
  if (w != (ssize_t)n) {
    if (w < 0) return -1;
    /* a partial record: end it (readers skip it) and write the whole record again */
    if (write_all(j->fd, "\n", 1) < 0 || write_all(j->fd, j->buf, n) < 0) return -1;
  }
  if (++j->unsynced >= j->sync_every) farm_journal_tick(j, -1);
  return 0;
}

int farm_journal_run(farm_journal *j, long tasks, const char *mode) {
  char head[512], host[256] = "";
  gethostname(host, sizeof host - 1);
  snprintf(head, sizeof head, "R\t%.3f\t%s\t%ld\t%ld\t%s\t", farm_now(), host, (long)getpid(),
           tasks, mode);
  return put_record(j, head, NULL);
}

int farm_journal_start(farm_journal *j, const farm_task *t, int attempt, double now) {
  char head[256];
  snprintf(head, sizeof head, "S\t%ld\t%d\t%.3f\t%016" PRIx64 "\t%ld\t%d\t", t->seq, attempt, now,
           t->hash, t->line, t->repeat);
  return put_record(j, head, t->cmd);
}

int farm_journal_finish(farm_journal *j, const farm_task *t, const farm_res *r, int final) {
  char head[1024];
  snprintf(head, sizeof head,
           "F\t%ld\t%d\t%d\t%s\t%d\t%d\t%.3f\t%.3f\t%s\t%d\t%d\t%d\t%" PRIu64 "\t%" PRIu64
           "\t%016" PRIx64 "\t%ld\t%d\t",
           t->seq, r->attempt, final, farm_outcome_names[r->outcome], r->exitval, r->sig, r->start,
           r->runtime, r->host[0] ? r->host : "-", r->pid, r->rank, r->slot, r->out_len, r->err_len,
           t->hash, t->line, t->repeat);
  return put_record(j, head, t->cmd);
}

void farm_journal_tick(farm_journal *j, double now) {
  if (!j || !j->unsynced) return;
  if (now < 0 || now - j->last_sync >= j->sync_seconds || j->unsynced >= j->sync_every) {
    if (j->has_syncer) {
      pthread_mutex_lock(&j->mu);
      j->want = 1;
      pthread_cond_signal(&j->cv);
      pthread_mutex_unlock(&j->mu);
    } else
      fdatasync(j->fd);
    j->unsynced = 0;
    j->last_sync = now < 0 ? farm_now() : now;
  }
}

void farm_journal_close(farm_journal *j) {
  if (!j) return;
  if (j->has_syncer) {
    pthread_mutex_lock(&j->mu);
    j->quit = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    pthread_join(j->syncer, NULL);
  }
  fdatasync(j->fd);
  close(j->fd);
  free(j->buf);
  free(j);
}

/* ---- reading ------------------------------------------------------------------------------------
 */

static void unescape(char *s) {
  char *d = s;
  for (; *s; s++) {
    if (*s == '\\' && s[1]) {
      s++;
      *d++ = *s == 't' ? '\t' : *s == 'n' ? '\n' : *s == 'r' ? '\r' : *s;
    } else
      *d++ = *s;
  }
  *d = '\0';
}

static int outcome_of(const char *s) {
  for (int i = 0; i < FARM_R_NOUTCOMES; i++)
    if (strcmp(s, farm_outcome_names[i]) == 0) return i;
  return -1;
}

int farm_journal_parse(char *line, farm_frec *f, int *is_start) {
  size_t n = strlen(line);
  if (n && line[n - 1] == '\n')
    line[--n] = '\0';
  else
    return -1; /* torn: no newline */
  memset(f, 0, sizeof *f);
  *is_start = 0;
  if (line[0] == '#') return 0; /* the header: neither a start nor a finish */
  char *tab = strrchr(line, '\t');
  if (!tab || strlen(tab + 1) != 8) return -1;
  uint32_t want = (uint32_t)strtoul(tab + 1, NULL, 16);
  if (crc32(line, (size_t)(tab + 1 - line)) != want) return -1;
  *tab = '\0';
  char *fld[24];
  int nf = 0;
  for (char *p = line; nf < 24;) {
    fld[nf++] = p;
    char *t = strchr(p, '\t');
    if (!t) break;
    *t = '\0';
    p = t + 1;
  }
  memset(f, 0, sizeof *f);
  *is_start = 0;
  if (strcmp(fld[0], "R") == 0 && nf == 6) { /* a run: tasks in f->line, time in f->start */
    f->start = atof(fld[1]), f->line = atol(fld[4]);
    snprintf(f->host, sizeof f->host, "%s", fld[2]);
    return 2;
  }
  if (strcmp(fld[0], "S") == 0 && nf == 8) {
    *is_start = 1;
    f->seq = atol(fld[1]), f->attempt = atoi(fld[2]), f->start = atof(fld[3]);
    f->hash = strtoull(fld[4], NULL, 16), f->line = atol(fld[5]), f->repeat = atoi(fld[6]);
    unescape(fld[7]);
    f->cmd = fld[7];
    return 0;
  }
  if (strcmp(fld[0], "F") != 0 || nf != 19) return -1;
  f->seq = atol(fld[1]), f->attempt = atoi(fld[2]), f->final = atoi(fld[3]);
  f->outcome = outcome_of(fld[4]);
  if (f->outcome < 0) return -1;
  f->exitval = atoi(fld[5]), f->sig = atoi(fld[6]), f->start = atof(fld[7]);
  f->runtime = atof(fld[8]);
  snprintf(f->host, sizeof f->host, "%s", fld[9]);
  f->pid = atoi(fld[10]), f->rank = atoi(fld[11]), f->slot = atoi(fld[12]);
  f->out_len = strtoull(fld[13], NULL, 10), f->err_len = strtoull(fld[14], NULL, 10);
  f->hash = strtoull(fld[15], NULL, 16), f->line = atol(fld[16]), f->repeat = atoi(fld[17]);
  unescape(fld[18]);
  f->cmd = fld[18];
  return f->seq > 0 ? 1 : -1;
}

typedef int (*rec_fn)(farm_frec *f, int is_final_rec, int is_start, void *arg);

static int each_record(const char *path, rec_fn fn, void *arg, long *bad) {
  FILE *fp = fopen(path, "r");
  if (!fp) return -1;
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  if (bad) *bad = 0;
  int rc = 0;
  while (rc == 0 && (n = getline(&line, &cap, fp)) > 0) {
    farm_frec f;
    int st;
    int k = farm_journal_parse(line, &f, &st);
    if (k < 0) {
      if (bad) (*bad)++;
      continue;
    }
    if (k == 1 || (k == 0 && st)) rc = fn(&f, k == 1, st, arg);
  }
  free(line);
  fclose(fp);
  return rc;
}

typedef struct read_ctx {
  farm_jentry *e;
  long n, cap;
  int *last_start;
} read_ctx;

static int read_one(farm_frec *f, int is_f, int is_start, void *arg) {
  read_ctx *c = arg;
  if (f->seq <= 0 || f->seq > 100000000) return 0;
  if (f->seq >= c->cap) {
    long cap = c->cap ? c->cap : 1024;
    while (cap <= f->seq) cap *= 2;
    farm_jentry *ne = realloc(c->e, (size_t)cap * sizeof *ne);
    int *nl = realloc(c->last_start, (size_t)cap * sizeof *nl);
    if (!ne || !nl) return free(ne ? ne : c->e), free(nl ? nl : c->last_start), -1;
    memset(ne + c->cap, 0, (size_t)(cap - c->cap) * sizeof *ne);
    memset(nl + c->cap, 0, (size_t)(cap - c->cap) * sizeof *nl);
    c->e = ne, c->last_start = nl, c->cap = cap;
  }
  if (f->seq >= c->n) c->n = f->seq + 1;
  farm_jentry *e = &c->e[f->seq];
  e->seq = f->seq;
  e->hash = f->hash;
  if (f->attempt > e->attempts) e->attempts = f->attempt;
  if (is_start) {
    c->last_start[f->seq] = f->attempt;
    e->started = 1;
    return 0;
  }
  (void)is_f;
  if (f->attempt >= c->last_start[f->seq]) e->started = 0;
  e->have_final = f->final;
  e->outcome = f->outcome;
  e->runtime = f->runtime;
  e->exitval = f->exitval;
  if (f->outcome == FARM_R_LOST) e->lost++;
  return 0;
}

int farm_journal_read(const char *path, farm_jentry **entries, long *n, long *bad) {
  read_ctx c = {0};
  if (each_record(path, read_one, &c, bad) < 0) return -1;
  free(c.last_start);
  *entries = c.e;
  *n = c.n;
  return 0;
}

/* ---- joblog and status file -------------------------------------------------------------------
 */

static int joblog_one(farm_frec *f, int is_f, int is_start, void *arg) {
  if (!is_f) return 0;
  fprintf((FILE *)arg, "%ld\t%s\t%.3f\t%8.3f\t%d\t%" PRIu64 "\t%d\t%d\t%s\n", f->seq, f->host,
          f->start, f->runtime, 0, f->out_len, f->exitval, f->sig, f->cmd);
  return 0;
}

int farm_journal_joblog(const char *journal, FILE *out) {
  fprintf(out, "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n");
  return each_record(journal, joblog_one, out, NULL);
}

typedef struct status_ctx {
  farm_frec *last; /* by seq: the last F record, cmd copied */
  long n;
} status_ctx;

static int status_one(farm_frec *f, int is_f, int is_start, void *arg) {
  status_ctx *c = arg;
  if (!is_f || f->seq > 100000000) return 0;
  if (f->seq >= c->n) {
    long n = c->n ? c->n : 1024;
    while (n <= f->seq) n *= 2;
    farm_frec *nl = realloc(c->last, (size_t)n * sizeof *nl);
    if (!nl) return -1;
    memset(nl + c->n, 0, (size_t)(n - c->n) * sizeof *nl);
    c->last = nl, c->n = n;
  }
  farm_frec *d = &c->last[f->seq];
  char *old = d->cmd;
  *d = *f;
  free(old);
  d->cmd = strdup(f->cmd);
  return d->cmd ? 0 : -1;
}

int farm_journal_status_file(const char *journal, const char *path) {
  status_ctx c = {0};
  int rc = each_record(journal, status_one, &c, NULL);
  FILE *out = rc == 0 ? fopen(path, "w") : NULL;
  if (out) {
    fprintf(out, "#Seq\tLine\tRepeat\tOutcome\tExitval\tSignal\tHost\tPid\tStart\tRuntime\t"
                 "Attempt\tCommand\n");
    for (long s = 1; s < c.n; s++) {
      farm_frec *f = &c.last[s];
      if (!f->cmd) continue;
      fprintf(out, "%ld\t%ld\t%d\t%s\t%d\t%d\t%s\t%d\t%.3f\t%.3f\t%d\t%s\n", f->seq, f->line,
              f->repeat, farm_outcome_names[f->outcome], f->exitval, f->sig, f->host, f->pid,
              f->start, f->runtime, f->attempt, f->cmd);
    }
    if (fclose(out) != 0) rc = -1;
  } else
    rc = -1;
  for (long s = 0; s < c.n; s++) free(c.last[s].cmd);
  free(c.last);
  return rc;
}
