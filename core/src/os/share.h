/* share.h: which shared objects this process has, and how a process-pool worker gets the ones
 * its parent made after mpx_init (internal to libmpx; share.c).
 *
 * The object table. Every shared object (Lock, Queue, Value, dict, list...) is a mapping that
 * starts with an mpx__shm_hdr (shm.h). mpx__shm_alloc enters it in this process's table, keyed by
 * its address; every public call looks the handle up there (mpx__shm_check) before it reads a
 * byte of it. A handle the table does not know (destroyed, never made, made in another process)
 * is refused with MPX_EINVAL and an mpx_errmsg saying why, instead of being dereferenced. A child
 * made by fork() inherits the table together with the mappings it describes.
 *
 * The arena. mpx_init (mpx__share_init) reserves a large range of address space (PROT_NONE,
 * nothing committed) before it forks the fork server, so that every pool worker inherits the same
 * reservation. From then on, objects the process that called mpx_init (the owner) makes are each
 * a memfd mapped at the next unused address of the arena (addresses are never reused). A pool
 * worker forked before such an object existed has that range reserved but unmapped: the first
 * time a task uses the handle (the same pointer value the parent holds, passed as an argument),
 * mpx__shm_check asks the parent over the worker's broker socket, gets the object's memfd over
 * SCM_RIGHTS and maps it at the same address, so the pointer works unchanged. Each such object
 * keeps its memfd open in the owner; out of file descriptors, an object is made as before
 * mpx_init (anonymous, outside the arena: threads and later children only), with a warning
 * logged once.
 *
 * Trust. The parent answers a worker's request (mpx__share_serve) only for an address that is
 * exactly the start of a live object the owner made in the arena; the size and the fd are the
 * parent's own, never taken from the request; anything else is answered with a refusal. A worker
 * can thus get only what it could have inherited had the object existed when it was forked, and
 * a worker that sends garbage or does not read its answers loses its broker socket.
 *
 * Thread-safety: lookups are lock-free (an open-addressed table published with release/acquire,
 * never shrunk; a replaced table is kept, not freed, so a reader never holds freed memory);
 * entries are added and removed under a mutex; a worker's requests go one at a time. pthread_atfork
 * handlers keep both mutexes consistent across fork(). */
#ifndef MPX_OS_SHARE_H
#define MPX_OS_SHARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reserve the arena and make this process its owner (mpx_init, before the fork server exists).
 * Idempotent; a process that cannot reserve it (address space limits) just goes without: objects
 * made later then reach only threads and children forked after them. */
void mpx__share_init(void);

/* Map `size` (page-rounded) zeroed bytes for a new object and enter it in the table (in the
 * arena, from a memfd, when this process owns one; else an anonymous shared mapping). NULL with
 * errno on failure. */
void *mpx__share_alloc(size_t size);
/* Remove obj (made by mpx__share_alloc, or fetched) from the table and unmap it here. */
void mpx__share_free(void *obj);
/* true if obj is an object this process has mapped (fetching it from the parent first when it
 * lies in the arena and this is a pool worker); false, with mpx__set_errmsg saying why, if not.
 * `what` names the kind for the message ("lock"). */
bool mpx__share_known(const void *obj, const char *what);

/* Worker side: the socket to ask the parent on (taken over). */
void mpx__share_set_broker(int fd);
/* Parent side: answer the requests waiting on broker socket `fd` (nonblocking). 0, or -1 when
 * the socket is closed or the worker misbehaved (the caller closes it). */
int mpx__share_serve(int fd);

#endif
