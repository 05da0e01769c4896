/* registry.c: lookups in the list of transports (registry.h) and the backends' names.
 *
 * Read-only: the list is a constant array defined by the transport layer (transport/transports.c),
 * so any thread may call these at any time. */
#include <string.h>

#include "registry.h"

const char *mpx_backend_name(mpx_backend b) {
  switch (b) {
  case MPX_BACKEND_AUTO: return "auto";
  case MPX_BACKEND_THREADS: return "threads";
  case MPX_BACKEND_PROCESSES: return "processes";
  case MPX_BACKEND_MPI: return "mpi";
  }
  return "invalid";
}

int mpx__backend_parse(const char *s, mpx_backend *out) {
  static const struct {
    const char *name;
    mpx_backend b;
  } names[] = {{"auto", MPX_BACKEND_AUTO},         {"threads", MPX_BACKEND_THREADS},
               {"thread", MPX_BACKEND_THREADS},    {"processes", MPX_BACKEND_PROCESSES},
               {"process", MPX_BACKEND_PROCESSES}, {"mpi", MPX_BACKEND_MPI}};
  for (size_t i = 0; s && i < sizeof names / sizeof names[0]; i++)
    if (!strcmp(s, names[i].name)) {
      *out = names[i].b;
      return MPX_OK;
    }
  return MPX_EINVAL;
}

int mpx__transport_find(mpx_backend b, const mpx__transport **out) {
  for (int i = 0; mpx__transports[i]; i++)
    if (mpx__transports[i]->backend == b) {
      *out = mpx__transports[i];
      return MPX_OK;
    }
  mpx__set_errmsg("the %s backend is not built into this mpx", mpx_backend_name(b));
  return MPX_ENOTBUILT;
}
