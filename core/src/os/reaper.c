/* reaper.c: detached threads the process waits for (reaper.h). */
#include <pthread.h>
#include <stdlib.h>

#include "mpx/error.h"
#include "os/reaper.h"

static struct {
  pthread_mutex_t lock;
  pthread_cond_t done;
  int pending; /* reapers started and not yet returned */
} reapers = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

typedef struct job {
  void (*fn)(void *);
  void *arg;
} job;

static void finished(void) {
  pthread_mutex_lock(&reapers.lock);
  if (!--reapers.pending) pthread_cond_broadcast(&reapers.done);
  pthread_mutex_unlock(&reapers.lock);
}

static void *reaper_main(void *p) {
  job j = *(job *)p;
  free(p);
  j.fn(j.arg);
  finished();
  return NULL;
}

int mpx__reaper_run(void (*fn)(void *), void *arg) {
  job *j = malloc(sizeof *j);
  if (!j) return MPX_ESYS;
  *j = (job){fn, arg};
  pthread_mutex_lock(&reapers.lock);
  reapers.pending++;
  pthread_mutex_unlock(&reapers.lock);
  pthread_attr_t attr;
  pthread_t t;
  int err = pthread_attr_init(&attr);
  if (!err) {
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    err = pthread_create(&t, &attr, reaper_main, j);
    pthread_attr_destroy(&attr);
  }
  if (!err) return MPX_OK;
  free(j);
  finished();
  return MPX_ESYS;
}

void mpx__reaper_wait(void) {
  pthread_mutex_lock(&reapers.lock);
  while (reapers.pending) pthread_cond_wait(&reapers.done, &reapers.lock);
  pthread_mutex_unlock(&reapers.lock);
}
