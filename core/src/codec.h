/* codec.h: the one path every byte crossing a process or rank boundary takes. Internal to libmpx.
 *
 * The wire unit is one mpx.Batch (core/proto/mpx.proto): tasks scheduler -> worker, results
 * worker -> scheduler, plus an optional Control. Stream transports (pipes, sockets) frame each
 * Batch as a 4-byte little-endian length followed by the packed bytes; MPI sends the packed bytes
 * as one message and needs no frame.
 *
 * Decoding is two-phase so that every length read from the wire is checked against a limit before
 * anything is allocated: mpx__wire_check walks the protobuf wire format of the whole buffer
 * without allocating (lengths, counts, wire types, nesting), and only then does protobuf-c's
 * unpack (which allocates) run, followed by semantic checks (chunk sizes, error codes).
 *
 * The worker side (serve.c) runs the tasks of a decoded Batch and packs one Batch of Results.
 *
 * Thread-safety: every function here is reentrant and keeps no state between calls; distinct
 * buffers and batches may be used from distinct threads at once. */
#ifndef MPX_CODEC_H
#define MPX_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "mpx.pb-c.h"

/* Size limits applied on both sides of the wire. */
typedef struct mpx__limits {
  size_t max_payload; /* one argument, result data, string or unknown field, in bytes */
  size_t max_message; /* one packed Batch (the frame body), in bytes; <= MPX__FRAME_MAX */
  size_t max_items;   /* tasks + results + unknown fields in one Batch (elements of repeated
                         message fields and unknown fields for other messages): bounds what
                         protobuf-c allocates for a small message; also the most items in one
                         map chunk (Task.count), which bounds the calls one Task makes */
} mpx__limits;

/* Largest frame body a 4-byte length can describe. */
#define MPX__FRAME_MAX ((size_t)UINT32_MAX)
/* Bytes in a frame header. */
#define MPX__FRAME_HDR 4
/* Default max_payload when 0 is given: 1 GiB. */
#define MPX__DEFAULT_MAX_PAYLOAD ((size_t)1 << 30)
/* Default max_items. */
#define MPX__DEFAULT_MAX_ITEMS ((size_t)1 << 20)
/* Nesting deeper than this (counting the Batch as 1) is refused by mpx__wire_check. */
#define MPX__WIRE_MAX_DEPTH 16

/* Limits for payloads of at most `max_payload` bytes (0: MPX__DEFAULT_MAX_PAYLOAD).
 * max_message = max_payload + max(max_payload, 64 MiB), at most MPX__FRAME_MAX (max_payload is
 * lowered to fit too); max_items = MPX__DEFAULT_MAX_ITEMS. */
mpx__limits mpx__limits_default(size_t max_payload);

/* ---- growable output buffer -------------------------------------------------------------- */

/* Bytes being built for one write or send. Zero-initialise ({0}) before first use. */
typedef struct mpx__wbuf {
  uint8_t *data;
  size_t len, cap;
} mpx__wbuf;

/* Make room for `extra` more bytes after len (geometric growth). MPX_ENOMEM. */
int mpx__wbuf_reserve(mpx__wbuf *b, size_t extra);
/* Append `n` bytes. MPX_ENOMEM. */
int mpx__wbuf_append(mpx__wbuf *b, const void *data, size_t n);
/* Forget the contents, keep the memory. */
void mpx__wbuf_reset(mpx__wbuf *b);
/* Free the memory; `b` is empty and reusable afterwards. */
void mpx__wbuf_free(mpx__wbuf *b);

/* ---- decoding ---------------------------------------------------------------------------- */

/* Walk `buf` as a packed message of type `desc` without allocating. MPX_EPROTO for anything
 * malformed or truncated (bad varint or tag, field 0, a length past the end, a known field with the
 * wrong wire type, wire types 3/4/6/7, nesting deeper than MPX__WIRE_MAX_DEPTH, bad packed
 * repeated data); MPX_ETOOBIG for len > max_message, any length-delimited field over
 * max_payload, or more than max_items elements of repeated message fields and unknown fields.
 * Unknown fields of wire types 0/1/2/5 are allowed (forward compatibility) and counted as items. */
int mpx__wire_check_msg(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                        const mpx__limits *lim);

/* mpx__wire_check_msg for an mpx.Batch. */
int mpx__wire_check(const uint8_t *buf, size_t len, const mpx__limits *lim);

/* Decode one Batch: wire check, decode (a fast hand-written decoder for what mpx sends, protobuf-c
 * for anything else; both give the same structs), then semantic checks (a map chunk's
 * count * item_size == arg.len without overflow; an Error's code is negative; Control.kind is
 * known and Control.slots >= 0), and MPX_ETOOBIG for a chunk of more than max_items items.
 * *out is a Batch to free with mpx__codec_free, or NULL on error.
 * Returns 0, MPX_EPROTO, MPX_ETOOBIG, MPX_ENOMEM or MPX_EINVAL. The Batch does not point into
 * `buf`. */
int mpx__codec_unpack(const uint8_t *buf, size_t len, const mpx__limits *lim, Mpx__Batch **out);

/* Whether the hand-written Batch encoder and decoder know every field of mpx.proto as generated
 * (they are off otherwise, and protobuf-c does the work). codec_test fails when not. */
bool mpx__codec_fast(void);

/* mpx__codec_unpack through protobuf-c's generic unpack only, skipping the fast decoder that
 * handles what mpx itself sends. For tests and the fuzzer, which compare the two. */
int mpx__codec_unpack_slow(const uint8_t *buf, size_t len, const mpx__limits *lim,
                           Mpx__Batch **out);

/* Free a Batch from mpx__codec_unpack (NULL is fine): its one arena goes at once. Aborts on a
 * Batch that did not come from mpx__codec_unpack (one built by hand: nothing to free). */
void mpx__codec_free(Mpx__Batch *b);

/* ---- encoding ---------------------------------------------------------------------------- */

/* Append the packed bytes of `b` to `out` (no frame header). MPX_ETOOBIG, checked before
 * packing, if any Task.arg, Result.data or Error string exceeds max_payload, a Task.count
 * exceeds max_items, the tasks, results
 * and unknown fields exceed max_items, or the packed size exceeds max_message; MPX_ENOMEM. On error `out`
 * is unchanged. */
int mpx__codec_pack(const Mpx__Batch *b, const mpx__limits *lim, mpx__wbuf *out);

/* mpx__codec_pack through protobuf_c_message_pack only (the fast encoder writes the same bytes).
 * For tests and the fuzzer. */
int mpx__codec_pack_slow(const Mpx__Batch *b, const mpx__limits *lim, mpx__wbuf *out);

/* The hand-written encoder (codec_encode.c) behind mpx__codec_pack: the packed size of b, and
 * write it at p (room for that size), returning the end. Only for a Batch without unknown fields
 * whose limits the caller checked. */
size_t mpx__fe_batch_size(const Mpx__Batch *b);
uint8_t *mpx__fe_batch(uint8_t *p, const Mpx__Batch *b);

/* Append a frame (header then packed `b`) to `out`. Same errors as mpx__codec_pack. */
int mpx__codec_pack_framed(const Mpx__Batch *b, const mpx__limits *lim, mpx__wbuf *out);

/* ---- frames ------------------------------------------------------------------------------ */

/* Write the 4-byte little-endian header of a frame whose body has `len` bytes
 * (len <= MPX__FRAME_MAX; the caller checked it against max_message). */
void mpx__frame_put_header(uint8_t hdr[MPX__FRAME_HDR], size_t len);

/* Read a frame header into *len. MPX_ETOOBIG if the body would exceed max_message: call this
 * before reading or allocating the body. */
int mpx__frame_get_header(const uint8_t hdr[MPX__FRAME_HDR], const mpx__limits *lim, size_t *len);

/* ---- what a worker may report ----------------------------------------------------------- */

/* The code the scheduler records for a task failure a worker reported: `code` itself when it is
 * in the task-failure set (MPX_ETASK, EINVAL, ENOMEM, ENOTASK, ETIMEDOUT, ETOOBIG, EPROTO, ESIZE,
 * ESYS, EMPI, EPERM, ESTATE, ENOTFOUND, EEXIST, EEOF, ECLOSED, EFULL, EEMPTY, EBROKEN,
 * EOWNERDEAD, ETOPO: what a task's own code can fail with), else MPX_ETASK. Never MPX_ECANCELLED,
 * MPX_EWORKER_LOST, MPX_ESHUTDOWN, MPX_ERELEASED, MPX_EINIT, MPX_ECALLBACK or MPX_ENOTBUILT: those
 * are the scheduler's own verdicts about a future, a worker or the executor, never a task's. */
int mpx__task_code(int code);

/* ---- the worker side (serve.c) ----------------------------------------------------------- */

/* Who serves: goes into every Error a worker sends (the scheduler does not trust these fields:
 * it names workers from the transport's own knowledge, see link.h's mpx__peer). */
typedef struct mpx__worker_id {
  int index;        /* worker index (what mpx_task_worker reports), -1 unknown */
  int pid;          /* the worker's process id */
  int rank;         /* MPI rank, -1 when not under MPI */
  const char *host; /* host name; NULL sends "" */
  /* The data plane (process workers): results of at least this many bytes are built in memfd
   * segments and sent out of band (serve.c); 0: never. */
  size_t seg_min;
  /* MPI workers: results of at least this many bytes go as their own message after the reply
   * (mpx__serve_batch_oob); 0: never. */
  size_t oob_min;
  /* NULL, or this worker's progress page (progress.h), which the dispatcher's side reads even
   * after this process died: serving claims each task in the page's claim ring before it runs
   * it (and skips, without a Result, a task it could not claim), and stores the call id of each
   * task it runs, so that a worker's death charges a retry to the task it was running only
   * (process/worker.c clears `running` once the results are packed) and time limits count from
   * the start. */
  struct mpx__progress *progress;
  uint64_t *seq; /* with progress: tasks received so far in this worker's stream */
  /* NULL, or one word per task of the Batch being served (an MPI rank's take-back words,
   * mpi_worker.c): 0 while queued; serving CASes a task's word to MPX__CLAIM_STARTED before it
   * runs it and skips (no Result) a task whose word the rank's server took (MPX__CLAIM_TAKEN). */
  _Atomic uint64_t *claims;
  /* NULL, or the stop requests of a worker without a progress page (an MPI rank's, filled by
   * its serving thread from the root's TAG_HALT messages; the root's own threads'): serving
   * points each task's mpx_task_should_stop at it. */
  struct mpx__halt *halt;
} mpx__worker_id;

/* Stop requests for the tasks of a worker without a progress page (mpx_task_should_stop):
 * `all` (shutdown with cancel_futures, terminate) asks every task; `id` holds the call ids of
 * the last MPX__HALT_RING tasks asked to stop by a cancel. Written by one thread (the one that
 * receives the requests), read by the task threads; relaxed: flags they poll. */
#define MPX__HALT_RING 64
#define MPX__HALT_ALL UINT64_MAX
typedef struct mpx__halt {
  _Atomic uint64_t all;
  _Atomic uint32_t next;
  _Atomic uint64_t id[MPX__HALT_RING];
} mpx__halt;

/* Record a request: MPX__HALT_ALL, or one call id. */
static inline void mpx__halt_note(mpx__halt *h, uint64_t id) {
  if (id == MPX__HALT_ALL) {
    atomic_store_explicit(&h->all, 1, memory_order_relaxed);
    return;
  }
  uint32_t i = atomic_fetch_add_explicit(&h->next, 1, memory_order_relaxed) % MPX__HALT_RING;
  atomic_store_explicit(&h->id[i], id, memory_order_relaxed);
}

/* Most out-of-band results in one reply (the fds passed with one frame). */
#define MPX__SERVE_SEGS 16

/* Run every Task of `in` and append one packed Batch of Results (same order, call ids echoed; no
 * frame header) to `out`; with who->progress or who->claims, tasks whose claim the worker lost are skipped and
 * have no Result (the Batch may then be empty: zero bytes); MPX_EPROTO if the page shows it was
 * overwritten (a claim word that reads 0 or STARTED before the worker reached it). A task that
 * fails, an unknown task id (MPX_ENOTASK), a chunk item whose result is not result_size bytes
 * (MPX_ESIZE), a result over max_payload or a chunk of more than max_items items (MPX_ETOOBIG) or
 * a malformed chunk (MPX_EPROTO) becomes a Result with an Error (code, message, pid, host, rank,
 * and for chunks the failing item's index, with the results before it in data); it is not an
 * error of this call. Should the Results together exceed max_message, the largest are replaced
 * by MPX_ETOOBIG errors until the Batch fits (then, if errors alone do not fit, their messages
 * are shortened, then dropped: an error result always fits, whatever max_payload is; its code is
 * mpx__task_code's). in->results and in->control are ignored (the transport handles Control).
 * `who` may be NULL (index -1, this pid, rank -1, host ""). Returns 0, or MPX_ENOMEM /
 * MPX_EINVAL / MPX_ETOOBIG (more tasks than max_items) with `out` unchanged. */
int mpx__serve_batch(const Mpx__Batch *in, const mpx__worker_id *who, const mpx__limits *lim,
                     mpx__wbuf *out);
/* As mpx__serve_batch, with the data plane: results built in segments (who->seg_min) travel
 * out of band; their sealed fds are stored in fds[0..*nfds) (room for MPX__SERVE_SEGS) in the
 * order their Results (data_shm > 0) appear, for the caller to send with the reply and close. */
int mpx__serve_batch_fds(const Mpx__Batch *in, const mpx__worker_id *who,
                         const mpx__limits *lim, mpx__wbuf *out, int *fds, int *nfds);
/* As mpx__serve_batch, with big results as their own messages (MPI): a result of at least
 * who->oob_min bytes is left out of the reply (its Result carries data_shm = its length) and
 * handed over in bufs/lens[0..*n) (room for MPX__SERVE_SEGS; heap blocks the caller sends after
 * the reply, in that order, and frees). */
int mpx__serve_batch_oob(const Mpx__Batch *in, const mpx__worker_id *who,
                         const mpx__limits *lim, mpx__wbuf *out, void **bufs, size_t *lens,
                         int *n);

/* Make a Control (a worker's READY) packable under `lim`, whatever max_payload is: an Error
 * message over max_payload bytes is cut (a heap copy, returned: free it after packing), host
 * names over it are left out (the scheduler names hosts itself). NULL when nothing was copied. */
char *mpx__control_fit(Mpx__Control *c, const mpx__limits *lim);

/* Run the worker initializer `initializer_name` once with `initargs` (its result is dropped).
 * NULL or "" name: nothing to run, 0. Unknown name: MPX_ENOTASK; the task fails: MPX_EINIT. On
 * failure *message (if message is not NULL) receives a heap string to free, else NULL. */
int mpx__serve_init(const char *initializer_name, const void *initargs, size_t len,
                    const mpx__worker_id *who, char **message);

#endif
