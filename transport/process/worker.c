/* worker.c: the process transport's worker process (see process_impl.h for the whole picture).
 *
 * A worker is forked (by the fork server, or directly by the transport without one) with
 * mpx__spawn's death signal armed, and runs mpx__worker_main on its end of a socketpair. It first
 * receives an FS_PROGRESS message carrying its own progress page (a memfd, process_impl.h) and
 * maps it, and starts its heartbeat thread; then an FS_SHARE message with its broker socket for
 * shared objects the parent made after mpx_init (os/share.h: a task's first use of one fetches
 * it); then one hello frame (its index, limits, placement,
 * initializer and initargs). Its replies stay under the hello's max_message (the parent's
 * max_worker_memory): mpx__serve_batch trims a reply of many results to it. It names itself
 * mpx-worker-<index>, binds itself to its placement, runs mpx__serve_init and answers a Batch
 * with Control READY (an Error if the initializer failed, after which it exits; mpx__control_fit
 * makes READY fit any max_payload). Then it loops: receive a frame, exit(0) on Control SHUTDOWN,
 * else mpx__serve_batch and send the results frame (none when every task of the batch was
 * skipped: an empty Batch is never sent). After max_tasks_per_worker tasks received it sends a
 * zero-length frame (the retire mark) and exits 0.
 *
 * The data plane: the channel accepts fds; a Task with arg_shm takes the frame's next fd, which
 * is checked and mapped read-only (os/seg.h) for the task to read in place (a segment that fails
 * the checks leaves arg_shm set, and serving fails that task with MPX_EPROTO), and unmapped after
 * the batch, except the dispatcher's reusable ones (its argument ring for this worker), of which
 * up to MPX__SEG_ARG_SLOTS stay mapped. Results of at least the hello's seg_min bytes are built in
 * segments by mpx_buf_reserve and passed with the reply (mpx__serve_batch_fds), then closed here:
 * mostly the slots of this process's result ring (os/seg.h), written again once the dispatcher has
 * copied a result out and stored FREE in the slot's header, so that a worker making big results
 * one after another writes warm pages; a one-shot sealed segment when both slots are FULL.
 *
 * Serving claims each task in the page's claim ring before it runs it (skipping, without a
 * Result, a task the parent claimed first: cancelled, or taken back to run elsewhere) and stores
 * its call id there; the worker clears `running` once the batch's results are
 * packed, before it sends them. The heartbeat thread bumps the page's counter every MPX__BEAT_MS
 * (relaxed: the dispatcher only compares it with its last value). EOF on the socket
 * (the parent is gone) exits 0; a frame over the limit, a malformed batch, running out of memory
 * or a progress page a task overwrote exit with a distinct status (64-70) that the transport
 * reports as the loss's detail.
 * Every exit flushes stdio and skips the program's atexit handlers.
 *
 * Locking: none; apart from the heartbeat thread, which touches nothing but its counter, the
 * worker process is single-threaded as far as this file is concerned (tasks may start threads
 * of their own). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "os/chan.h"
#include "os/clock.h"
#include "os/seg.h"
#include "os/share.h"
#include "process_impl.h"
#include "progress.h"
#include "task_impl.h"

static void worker_exit(int code) __attribute__((noreturn));
static void worker_exit(int code) {
  fflush(NULL); /* task output is not lost; _exit skips the program's atexit handlers */
  _exit(code);
}

/* Block until a whole frame is in; spin briefly first (the next batch often follows at once). */
static int worker_recv(mpx__chan *c, const void **data, size_t *len, long spin_ns) {
  int64_t t0 = mpx__now_ns();
  for (;;) {
    int r = mpx__chan_recv_nb(c, data, len);
    if (r != 0) return r;
    if (mpx__now_ns() - t0 < spin_ns) {
      sched_yield(); /* a spinning worker must not keep a woken thread off the CPU */
      continue;
    }
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, -1) < 0 && errno != EINTR) return MPX_ESYS;
    t0 = mpx__now_ns();
  }
}

/* The message before the hello, with this worker's progress page (a memfd): map it. Exits if
 * there is none (the parent always sends one). */
static mpx__progress *worker_progress(int fd) {
  fs_msg m;
  int pfd;
  if (mpx__fs_recv(fd, &m, &pfd, 0) != 1 || m.op != FS_PROGRESS || pfd < 0) {
    if (pfd >= 0) close(pfd);
    worker_exit(0); /* the parent went away before the hello */
  }
  struct stat st;
  void *p = MAP_FAILED;
  if (fstat(pfd, &st) == 0 && (size_t)st.st_size >= sizeof(mpx__progress))
    p = mmap(NULL, sizeof(mpx__progress), PROT_READ | PROT_WRITE, MAP_SHARED, pfd, 0);
  close(pfd);
  if (p == MAP_FAILED) worker_exit(69);
  return p;
}

/* The message after the page: our end of the broker socket for shared objects the parent made
 * after mpx_init (os/share.h), or none. Exits if the message is not there. */
static void worker_share(int fd) {
  fs_msg m;
  int sfd;
  if (mpx__fs_recv(fd, &m, &sfd, 0) != 1 || m.op != FS_SHARE) {
    if (sfd >= 0) close(sfd);
    worker_exit(0);
  }
  if (sfd >= 0) mpx__share_set_broker(sfd);
}

/* The argument segments the dispatcher reuses for this worker (its argument ring, size-sealed,
 * not write-sealed), kept mapped between batches so that a reused segment costs no mapping: at
 * most MPX__SEG_ARG_SLOTS, the least recently used one unmapped for a new one. */
typedef struct kept_seg {
  mpx__seg seg;
  unsigned long long id[2];
  unsigned long used; /* the batch that last read it */
} kept_seg;

/* Map the out-of-band arguments of `in` (Tasks with arg_shm, in order, one fd each from the
 * frame) into segs; each mapped Task's arg points at its mapping and its arg_shm is cleared. A
 * missing or unfit segment leaves its Task's arg_shm set (serving fails that task). A segment
 * the dispatcher reuses (not write-sealed) is kept in `keep` (batch is this batch's number:
 * a mapping a task of it reads is never unmapped before it is served); the others, and a
 * reused one when every kept one is in use by this batch, are one-shot. Returns how many segs
 * to free after serving. */
static int map_args(mpx__chan *ch, Mpx__Batch *in, const mpx__limits *lim,
                    mpx__seg segs[MPX__CHAN_FDS_PER_FRAME], kept_seg keep[MPX__SEG_ARG_SLOTS],
                    unsigned long batch) {
  int n = 0;
  for (size_t k = 0; k < in->n_tasks; k++) {
    Mpx__Task *t = in->tasks[k];
    if (!t->arg_shm) continue;
    int fd = mpx__chan_take_fd(ch);
    unsigned long long id[2];
    if (fd < 0 || n == MPX__CHAN_FDS_PER_FRAME || t->arg.len || mpx__seg_ident(fd, id)) {
      if (fd >= 0) close(fd);
      continue;
    }
    kept_seg *hit = NULL, *spare = NULL;
    for (int j = 0; j < MPX__SEG_ARG_SLOTS && !hit; j++) {
      kept_seg *q = &keep[j];
      if (q->seg.map_len && id[0] == q->id[0] && id[1] == q->id[1]) hit = q;
      else if (q->used != batch && (!spare || q->used < spare->used)) spare = q;
    }
    if (hit && t->arg_shm <= hit->seg.map_len && t->arg_shm <= lim->max_payload) {
      close(fd); /* a segment we have mapped already (checked then: its size cannot change) */
      hit->used = batch;
      t->arg.data = hit->seg.data;
      t->arg.len = (size_t)t->arg_shm;
      t->arg_shm = 0;
      continue;
    }
    if (hit) { /* declares more than it holds: refused (mpx__seg_map says so) */
      mpx__seg s;
      if (!mpx__seg_map(&s, fd, (size_t)t->arg_shm, lim->max_payload, MPX__SEG_AT_LEAST))
        mpx__seg_free(&s); /* cannot happen: the size is sealed */
      continue;
    }
    bool reused = !(fcntl(fd, F_GET_SEALS) & F_SEAL_WRITE);
    mpx__seg s;
    if (mpx__seg_map(&s, fd, (size_t)t->arg_shm, lim->max_payload, MPX__SEG_AT_LEAST)) continue;
    t->arg.data = s.data;
    t->arg.len = s.len;
    t->arg_shm = 0;
    if (reused && spare) { /* keep it mapped for the next batches */
      mpx__seg_free(&spare->seg);
      spare->seg = s;
      spare->id[0] = id[0], spare->id[1] = id[1];
      spare->used = batch;
    } else {
      segs[n++] = s;
    }
  }
  return n;
}

/* The heartbeat: bumped every MPX__BEAT_MS while the process is scheduled, so that the
 * dispatcher tells a stopped or hung process from one running a long task. relaxed: a counter
 * that is only compared with its last value. */
static void *beat_main(void *arg) {
  mpx__progress *pg = arg;
  const struct timespec period = {0, MPX__BEAT_MS * 1000000L};
  for (;;) {
    atomic_fetch_add_explicit(&pg->heartbeat, 1, memory_order_relaxed);
    nanosleep(&period, NULL);
  }
  return NULL;
}

static void start_beat(mpx__progress *pg) {
  pthread_attr_t a;
  pthread_t beat;
  pthread_attr_init(&a);
  pthread_attr_setstacksize(&a, 64 << 10);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&beat, &a, beat_main, pg)) worker_exit(69); /* no beat reads as a stall */
  pthread_attr_destroy(&a);
}

void mpx__worker_main(int fd) {
  signal(SIGPIPE, SIG_IGN);
  mpx__progress *progress = worker_progress(fd);
  worker_share(fd);
  start_beat(progress);
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  mpx__chan ch;
  mpx__chan_init(&ch, fd, MPX__FRAME_MAX); /* the hello comes from the trusted parent */
  mpx__chan_accept_fds(&ch);                /* argument segments */
  const void *data;
  size_t len;
  if (worker_recv(&ch, &data, &len, 0) != 1) worker_exit(0);
  hello h;
  if (len < sizeof h) worker_exit(64);
  memcpy(&h, data, sizeof h);
  if (h.magic != HELLO_MAGIC || h.initargs_len != len - sizeof h) worker_exit(64);
  void *initargs = NULL;
  if (h.initargs_len) {
    if (!(initargs = malloc(h.initargs_len))) worker_exit(65);
    memcpy(initargs, (const char *)data + sizeof h, h.initargs_len);
  }
  mpx__chan_shrink(&ch, KEEP_BUF);
  mpx__limits lim = mpx__limits_default(h.max_payload);
  if (h.max_message && h.max_message < lim.max_message) lim.max_message = (size_t)h.max_message;
  ch.max_frame = lim.max_message;
  char host[64] = "";
  gethostname(host, sizeof host - 1);
  char name[16];
  snprintf(name, sizeof name, "mpx-worker-%d", h.index);
  prctl(PR_SET_NAME, name);
  if (h.place.cpuset[0]) mpx_topology_bind_process(&h.place);
  mpx__worker_id who = {.index = h.index, .pid = (int)getpid(), .rank = -1, .host = host,
                        .seg_min = (size_t)h.seg_min};
  uint64_t seq = 0; /* tasks received: the index into the claim ring */
  who.progress = progress;
  who.seq = &seq;

  int rc = MPX_OK;
  char *msg = NULL;
  const mpx_task *init = NULL;
  if (h.has_init) {
    rc = mpx_task_find_id(h.init_id, &init);
    if (rc)
      msg = mpx__strdupf("no initializer task is registered with id 0x%08x", h.init_id);
    else
      rc = mpx__serve_init(init->name, initargs, (size_t)h.initargs_len, &who, &msg);
  }
  free(initargs);
  Mpx__Error err = MPX__ERROR__INIT;
  Mpx__Control ctl = MPX__CONTROL__INIT;
  ctl.kind = MPX__CONTROL__KIND__READY;
  ctl.pid = who.pid;
  ctl.host = host;
  ctl.slots = 1;
  if (rc) {
    err.code = rc < 0 ? rc : MPX_EINIT;
    err.message = msg ? msg : (char *)mpx_strerror(rc);
    err.pid = who.pid;
    err.host = host;
    err.rank = -1;
    ctl.error = &err;
  }
  Mpx__Batch ready = MPX__BATCH__INIT;
  ready.control = &ctl;
  mpx__wbuf out = {0};
  char *cut = mpx__control_fit(&ctl, &lim); /* READY fits any max_payload */
  if (mpx__codec_pack(&ready, &lim, &out) || mpx__chan_send(&ch, out.data, out.len)) worker_exit(0);
  free(cut);
  free(msg);
  if (rc) worker_exit(0); /* the dispatcher reports the initializer's failure */

  long done = 0;
  kept_seg keep[MPX__SEG_ARG_SLOTS];
  for (int j = 0; j < MPX__SEG_ARG_SLOTS; j++) keep[j] = (kept_seg){.seg = MPX__SEG_NONE};
  unsigned long batches = 0;
  for (;;) {
    int r = worker_recv(&ch, &data, &len, (long)h.spin_ns);
    if (r != 1) worker_exit(r == MPX_EEOF ? 0 : 66); /* parent gone, or a frame over the limit */
    Mpx__Batch *in;
    if (mpx__codec_unpack(data, len, &lim, &in)) worker_exit(67);
    if (in->control && in->control->kind == MPX__CONTROL__KIND__SHUTDOWN) worker_exit(0);
    if (!in->n_tasks) {
      mpx__codec_free(in);
      continue;
    }
    mpx__seg args[MPX__CHAN_FDS_PER_FRAME];
    int nargs = map_args(&ch, in, &lim, args, keep, ++batches);
    mpx__wbuf_reset(&out);
    int fds[MPX__SERVE_SEGS], nfds = 0;
    rc = mpx__serve_batch_fds(in, &who, &lim, &out, fds, &nfds);
    done += (long)in->n_tasks;
    for (int k = 0; k < nargs; k++) mpx__seg_free(&args[k]);
    mpx__codec_free(in);
    /* out of memory (68), or a progress page that a task overwrote (70): the dispatcher re-runs
     * or fails the batch */
    if (rc) worker_exit(rc == MPX_EPROTO ? 70 : 68);
    /* Every task ran and the results are packed: a death from here on is no task's doing. Cleared
     * before the send, so that once the results are out the word never names a call id that may be
     * reused for a later task. relaxed: the dispatcher reads it after this process is reaped, or
     * as a hint (progress.h). */
    atomic_store_explicit(&progress->running, 0, memory_order_relaxed);
    /* every task was cancelled or taken back: nothing to say (an empty Batch reads as the retire
     * mark); segments go with the reply */
    struct iovec v = {.iov_base = out.data, .iov_len = out.len};
    int sr = out.len ? mpx__chan_sendv_fds(&ch, &v, 1, fds, nfds) : 0;
    for (int k = 0; k < nfds; k++) close(fds[k]); /* in flight, the kernel holds them */
    if (sr) worker_exit(0);
    if (out.cap > KEEP_BUF) mpx__wbuf_free(&out);
    mpx__chan_shrink(&ch, KEEP_BUF);
    if (h.max_tasks > 0 && done >= h.max_tasks) {
      mpx__chan_send(&ch, NULL, 0); /* the retire mark */
      worker_exit(0);
    }
  }
}
