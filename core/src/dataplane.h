/* dataplane.h: the dispatcher's side of the data plane (dataplane.c): big arguments leave as
 * sealed memfd segments, big results arrive as ones, on links with MPX__CAP_SHM (config.h; the
 * process transport). Internal to libmpx; see os/seg.h for the segments themselves and serve.c
 * for the worker's side.
 *
 * Thread-safety: an mpx__dp belongs to the dispatcher thread (one batch at a time). */
#ifndef MPX_DATAPLANE_H
#define MPX_DATAPLANE_H

#include <stdbool.h>
#include <stddef.h>

#include "codec.h"
#include "link.h"
#include "os/seg.h"

/* Segments one batch may carry (the fds passed with one frame). */
#define MPX__DP_FDS 16

/* The segments of the batch being built. */
typedef struct mpx__dp {
  int fds[MPX__DP_FDS];
  int nfds;
} mpx__dp;

/* With `caps` & MPX__CAP_SHM and room in dp: move Task t's argument (t->arg, at least
 * MPX__SEG_MIN bytes) into a new sealed segment whose fd goes with the batch: t->arg becomes
 * empty and t->arg_shm its length. False when it stays in the frame (small, no room, or the
 * segment could not be made: the bytes are then copied into the frame as before). */
bool mpx__dp_arg(mpx__dp *dp, unsigned caps, Mpx__Task *t);
/* Send the batch through `link` (send_fds when it carries segments, else send), then close the
 * batch's fds (in flight, the kernel holds them; a dead worker's socket releases them). */
int mpx__dp_send(mpx__dp *dp, const mpx__link_ops *link, mpx__link *tp, int worker,
                 const uint8_t *data, size_t len);

/* Close the fds of a batch that was not sent. */
void mpx__dp_reset(mpx__dp *dp);

/* Result r from `worker` says its data is out of band (data_shm > 0): take the worker's next fd
 * and map it read-only after checking it (os/seg.h: sealed, a regular file of exactly data_shm
 * bytes, data_shm <= max_payload, checked before mapping). MPX_OK with *seg mapped; otherwise a
 * code and *why says what the worker did wrong (it broke the protocol). */
int mpx__dp_result(const mpx__link_ops *link, mpx__link *tp, int worker, const Mpx__Result *r,
                   size_t max_payload, mpx__seg *seg, const char **why);

#endif
