/* mpx queues: a FIFO of byte items shared by threads and forked processes, as
 * multiprocessing.Queue (and queue.Queue between threads).
 *
 * The queue lives in shared memory. Made before fork(), every child uses it through the handle
 * it inherited. Made after mpx_init, it may also be passed to process-pool tasks as an argument
 * (ipc_sync.h says how). any number of producers and consumers, in any
 * threads of any of those processes, may put and get at once. Nothing is named, so nothing is
 * left in /dev/shm. Items are bytes of any size: an item that fits in the shared ring is copied
 * in one piece; a larger one is streamed through the ring in fragments while its producer keeps
 * the put side and its consumer the get side (items never interleave), so ring_bytes bounds
 * memory, not item size. Protobuf-c messages are packed into items by mpx_queue_put_msg.
 *
 * Ordering: items come out in the order their puts completed; each item is taken by exactly one
 * get. Thread-safety: every function may be called from any thread of any process that has the
 * queue, except mpx_queue_destroy, which ends this process's use of it.
 *
 * Faults: producers and consumers are serialised by robust process-shared mutexes. A process
 * killed (even by SIGKILL) in the middle of a put or get never corrupts the queue nor blocks the
 * others for good: the next producer or consumer takes over; an item whose producer died before
 * finishing it is discarded whole (never delivered in part), and an item whose consumer died
 * while taking it is lost with that consumer, as in Python. qsize() stays exact.
 *
 * Waiting: a waiter spins for a few microseconds, then sleeps on a futex. Timeouts are seconds:
 * negative waits forever, 0 does not block. With block = false the timeout is ignored and a put
 * that cannot proceed now answers MPX_EFULL, a get MPX_EEMPTY; with block = true an expired
 * timeout answers MPX_ETIMEDOUT. close() ends the queue for everyone: puts answer MPX_ECLOSED,
 * gets return what is left and then MPX_ECLOSED. */
#ifndef MPX_IPC_QUEUE_H
#define MPX_IPC_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

#include "mpx/export.h"
#include "mpx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpx_queue mpx_queue;
struct ProtobufCMessage;
struct ProtobufCMessageDescriptor;

/* Ring size used when mpx_queue_create is given 0. */
#define MPX_QUEUE_RING_DEFAULT ((size_t)64 << 10)

/* Create a queue holding at most `maxsize` items (0 or negative: no bound on the count) in a
 * shared ring of `ring_bytes` (0: MPX_QUEUE_RING_DEFAULT; rounded up to a power of two, at least
 * 128, at most 2 GiB). Each item takes 16 bytes of header plus its size rounded up to 8 in the
 * ring. */
MPX_API int mpx_queue_create(mpx_queue **q, long maxsize, size_t ring_bytes);

/* Unmap the queue from this process (other processes keep using theirs). */
MPX_API int mpx_queue_destroy(mpx_queue *q);

/* Put a copy of data[0..len). Returns 0, MPX_EFULL (block = false and no room now: the count
 * bound is reached, the ring has no room, or the item must be streamed), MPX_ETIMEDOUT,
 * MPX_ECLOSED, MPX_EINVAL. */
MPX_API int mpx_queue_put(mpx_queue *q, const void *data, size_t len, bool block, double timeout);
/* put(block = false). */
MPX_API int mpx_queue_put_nowait(mpx_queue *q, const void *data, size_t len);

/* Take the oldest item into buf[0..cap); *len = its size. MPX_ETOOBIG (with *len = the size
 * needed) leaves the item at the head for a retry with a bigger buffer. Returns 0, MPX_EEMPTY
 * (block = false and no whole item now), MPX_ETIMEDOUT, MPX_ECLOSED (closed and drained). */
MPX_API int mpx_queue_get(mpx_queue *q, void *buf, size_t cap, size_t *len, bool block,
                          double timeout);
/* get(block = false). */
MPX_API int mpx_queue_get_nowait(mpx_queue *q, void *buf, size_t cap, size_t *len);
/* As mpx_queue_get into a malloc'd buffer of the item's size (*data, free() it; NULL if *len
 * is 0). */
MPX_API int mpx_queue_get_alloc(mpx_queue *q, void **data, size_t *len, bool block, double timeout);

/* Put a protobuf-c message (packed with protobuf_c_message_pack). */
MPX_API int mpx_queue_put_msg(mpx_queue *q, const struct ProtobufCMessage *msg, bool block,
                              double timeout);
/* Take an item and unpack it with `desc` (*msg: free with protobuf_c_message_free_unpacked).
 * MPX_EPROTO if the item does not unpack (the item is consumed). */
MPX_API int mpx_queue_get_msg(mpx_queue *q, const struct ProtobufCMessageDescriptor *desc,
                              struct ProtobufCMessage **msg, bool block, double timeout);

/* Number of whole items in the queue now (*n). Exact when nothing moves, a snapshot otherwise. */
MPX_API int mpx_queue_qsize(const mpx_queue *q, size_t *n);
/* 1 if no whole item is queued, else 0 (negative on bad input). */
MPX_API int mpx_queue_empty(const mpx_queue *q);
/* 1 if the queue is bounded and holds maxsize items, else 0. */
MPX_API int mpx_queue_full(const mpx_queue *q);

/* Close the queue for every process: puts fail with MPX_ECLOSED, gets drain then MPX_ECLOSED,
 * and all waiters wake. Closing twice is fine. */
MPX_API int mpx_queue_close(mpx_queue *q);
/* 1 if closed, else 0. */
MPX_API int mpx_queue_closed(const mpx_queue *q);

#ifdef __cplusplus
}
#endif
#endif
