/* log.c: the log hook (mpx/log.h) and mpx__log (os/log.h).
 *
 * State: the logger, its user pointer and the level, guarded by one mutex; mpx__log_gate mirrors
 * "level if a logger is installed, else off" for the lock-free check in mpx__log. MPX_LOG is read
 * once (pthread_once) by the first mpx__log_emit or mpx_log_* call, before that call looks at the
 * state, so the environment gives the starting point and the application's calls override it.
 * A message is formatted outside the lock; the logger and its pointer are copied under it and
 * called outside it (so a logger may log or call mpx_log_set without deadlocking). A fork
 * handler holds the mutex across fork(), so a child never inherits it locked. */
#include "os/log.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "mpx/error.h"

_Atomic int mpx__log_gate = INT_MAX;

static struct {
  pthread_mutex_t lock;
  mpx_log_fn fn;
  void *user;
  int level;
} st = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, MPX_LOG_WARN};

static pthread_once_t once = PTHREAD_ONCE_INIT;

/* With the lock held. */
static void publish(void) {
  atomic_store_explicit(&mpx__log_gate, st.fn ? st.level : MPX_LOG_OFF, memory_order_relaxed);
}

static void fork_lock(void) { pthread_mutex_lock(&st.lock); }
static void fork_unlock(void) { pthread_mutex_unlock(&st.lock); }

static int parse_level(const char *s) {
  static const struct {
    const char *name;
    int level;
  } names[] = {{"off", MPX_LOG_OFF},     {"0", MPX_LOG_OFF},      {"none", MPX_LOG_OFF},
               {"error", MPX_LOG_ERROR}, {"warn", MPX_LOG_WARN},  {"warning", MPX_LOG_WARN},
               {"info", MPX_LOG_INFO},   {"debug", MPX_LOG_DEBUG}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!strcasecmp(s, names[i].name)) return names[i].level;
  return MPX_LOG_WARN; /* MPX_LOG=1, yes, ...: the user asked for output */
}

static void init(void) {
  pthread_atfork(fork_lock, fork_unlock, fork_unlock);
  const char *env = getenv("MPX_LOG");
  pthread_mutex_lock(&st.lock);
  if (env && *env) {
    st.level = parse_level(env);
    st.fn = mpx_log_default;
    st.user = NULL;
  }
  publish();
  pthread_mutex_unlock(&st.lock);
}

void mpx_log_set(mpx_log_fn fn, void *user) {
  pthread_once(&once, init);
  pthread_mutex_lock(&st.lock);
  st.fn = fn;
  st.user = user;
  publish();
  pthread_mutex_unlock(&st.lock);
}

int mpx_log_set_level(int level) {
  if (level < MPX_LOG_OFF || level > MPX_LOG_DEBUG) return MPX_EINVAL;
  pthread_once(&once, init);
  pthread_mutex_lock(&st.lock);
  st.level = level;
  publish();
  pthread_mutex_unlock(&st.lock);
  return MPX_OK;
}

static const char *level_name(int level) {
  switch (level) {
  case MPX_LOG_ERROR: return "error";
  case MPX_LOG_WARN: return "warn";
  case MPX_LOG_INFO: return "info";
  case MPX_LOG_DEBUG: return "debug";
  }
  return "log";
}

void mpx_log_default(int level, const char *msg, void *user) {
  (void)user;
  char line[1200];
  int n = snprintf(line, sizeof line, "mpx: %s: %s\n", level_name(level), msg ? msg : "");
  if (n < 0) return;
  if ((size_t)n >= sizeof line) { /* cut: keep the newline */
    n = (int)sizeof line - 1;
    line[n - 1] = '\n';
  }
  for (size_t off = 0; off < (size_t)n;) { /* one write; the loop only resumes a short one */
    ssize_t w = write(STDERR_FILENO, line + off, (size_t)n - off);
    if (w <= 0) return;
    off += (size_t)w;
  }
}

void mpx__log_emit(int level, const char *fmt, ...) {
  pthread_once(&once, init);
  if (level > atomic_load_explicit(&mpx__log_gate, memory_order_relaxed)) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&st.lock);
  mpx_log_fn fn = st.fn;
  void *user = st.user;
  int max = st.level;
  pthread_mutex_unlock(&st.lock);
  if (fn && level <= max) fn(level, msg, user);
}
