/* mpx pipes: two connected ends carrying whole messages, as multiprocessing.Pipe.
 *
 * mpx_pipe_create makes a socketpair. Duplex pipes send and receive on both ends; one-way pipes
 * give a read-only end and a write-only end (sending on the read end, or receiving on the write
 * end, is MPX_EPERM). Messages are framed (4-byte little-endian length, then the body); a length
 * over the end's maximum (64 MiB unless set) is refused before anything is allocated and breaks
 * the end (MPX_EPROTO afterwards). Create the pipe before fork(); then each process closes the
 * end it does not use, so that the other side sees end-of-file when its peer closes or dies:
 * receiving on an end whose peer is closed gives MPX_EEOF (Python's EOFError), and sending to a
 * closed peer gives MPX_EEOF as well (Python's BrokenPipeError), never SIGPIPE.
 *
 * Thread-safety: as Python's Connection, an end is not locked: at most one thread sends and one
 * thread receives on an end at a time (send and receive may overlap). Timeouts are seconds:
 * negative waits forever, 0 polls; they bound the wait for a message to begin. */
#ifndef MPX_IPC_PIPE_H
#define MPX_IPC_PIPE_H

#include <stdbool.h>
#include <stddef.h>

#include "mpx/export.h"
#include "mpx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpx_pipe mpx_pipe;
struct ProtobufCMessage;
struct ProtobufCMessageDescriptor;

/* Make a connected pair. duplex: both ends send and receive. Not duplex: *a is read-only and *b
 * is write-only (as Python's Pipe(duplex=False) returns (reader, writer)). */
MPX_API int mpx_pipe_create(mpx_pipe **a, mpx_pipe **b, bool duplex);

/* Set the largest message this end accepts or sends (bytes, 1..4 GiB-1); default 64 MiB. */
MPX_API int mpx_pipe_set_max(mpx_pipe *p, size_t max_bytes);

/* Send `len` bytes as one message (blocks until written). MPX_EPERM on a read-only end,
 * MPX_EEOF if the peer is closed, MPX_ETOOBIG over the maximum, MPX_ECLOSED if this end is. */
MPX_API int mpx_pipe_send_bytes(mpx_pipe *p, const void *data, size_t len);

/* Receive one message into buf[0..cap); *len = its length. MPX_ETOOBIG (with *len = the size
 * needed) leaves the message pending for a retry with a bigger buffer. MPX_EEOF when the peer
 * is closed and nothing is left; MPX_ETIMEDOUT; MPX_EPERM on a write-only end. */
MPX_API int mpx_pipe_recv_bytes(mpx_pipe *p, void *buf, size_t cap, size_t *len, double timeout);

/* As mpx_pipe_recv_bytes into a malloc'd buffer of the message's size (*data; free() it). */
MPX_API int mpx_pipe_recv_bytes_alloc(mpx_pipe *p, void **data, size_t *len, double timeout);

/* Send a protobuf-c message (packed with protobuf_c_message_pack). */
MPX_API int mpx_pipe_send(mpx_pipe *p, const struct ProtobufCMessage *msg);

/* Receive a message and unpack it with `desc` into *msg (free with
 * protobuf_c_message_free_unpacked(*msg, NULL)). MPX_EPROTO if it does not unpack (the bytes are
 * consumed). */
MPX_API int mpx_pipe_recv(mpx_pipe *p, const struct ProtobufCMessageDescriptor *desc,
                          struct ProtobufCMessage **msg, double timeout);

/* 1 if a message (or end-of-file) is ready to receive, 0 if not within `timeout`, or a code. */
MPX_API int mpx_pipe_poll(mpx_pipe *p, double timeout);

/* The end's file descriptor (*fd), for poll()/epoll in the caller's own loop. */
MPX_API int mpx_pipe_fileno(const mpx_pipe *p, int *fd);

/* 1 if this end can receive / send, 0 if not, negative on bad input. */
MPX_API int mpx_pipe_readable(const mpx_pipe *p);
MPX_API int mpx_pipe_writable(const mpx_pipe *p);

/* Close this end's descriptor (closing twice is fine). The handle stays valid: later calls on
 * it answer MPX_ECLOSED. Each process closes its own copies of the ends it does not use. */
MPX_API int mpx_pipe_close(mpx_pipe *p);

/* Close (if still open) and free the handle; it must not be used afterwards. */
MPX_API int mpx_pipe_destroy(mpx_pipe *p);

#ifdef __cplusplus
}
#endif
#endif
