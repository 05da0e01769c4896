/* record.c: the two records of mpx-farm that cross to a worker and back, as mpx task bytes.
 *
 * A command record (coordinator -> worker) is a fixed header followed by the command text and the
 * output directory, each NUL-terminated; a result record (worker -> coordinator) is a fixed header
 * followed by the host name, the pack file name and, in grouped mode, the task's stdout and
 * stderr bytes. Every process of a run is the same binary on the same architecture (mpx's own
 * rule for tasks), so the headers are plain structs copied with memcpy. Decoding checks the magic
 * number, every length against the bytes received and every string's terminator before anything
 * is used: a truncated or malformed record is refused, never read past. Pure functions, no state:
 * safe from any thread. */
#include <stdlib.h>
#include <string.h>

#include "farm.h"

const char *const farm_outcome_names[FARM_R_NOUTCOMES] = {"ok",       "fail",    "timeout", "spawn",
                                                          "deadline", "stopped", "lost"};

enum { CMD_MAGIC = 0x434d5246u /* "FRMC" */, RES_MAGIC = 0x524d5246u /* "FRMR" */ };

typedef struct cmd_hdr {
  uint32_t magic, cmd_len, dir_len, gpus_len;
  int32_t repeat, attempt, cores, out_mode, slots, bind;
  int64_t seq, line;
  double timeout, grace, kill_at;
} cmd_hdr;

typedef struct res_hdr {
  uint32_t magic, host_len, where_len;
  int32_t attempt, outcome, exitval, sig, pid, rank, slot;
  int64_t seq;
  double start, runtime;
  uint64_t out_len, err_len, pack_off, out_inline, err_inline;
} res_hdr;

int farm_cmd_encode(const farm_cmd *c, void **buf, size_t *len) {
  const char *dir = c->dir ? c->dir : "", *gpus = c->gpus ? c->gpus : "";
  size_t cl = strlen(c->cmd), dl = strlen(dir), gl = strlen(gpus);
  if (cl > UINT32_MAX - 1 || dl > 65535 || gl > 65535) return -1;
  cmd_hdr h = {.magic = CMD_MAGIC,
               .cmd_len = (uint32_t)cl,
               .dir_len = (uint32_t)dl,
               .gpus_len = (uint32_t)gl,
               .slots = c->slots,
               .bind = c->bind,
               .repeat = c->repeat,
               .attempt = c->attempt,
               .cores = c->cores,
               .out_mode = c->out_mode,
               .seq = c->seq,
               .line = c->line,
               .timeout = c->timeout,
               .grace = c->grace,
               .kill_at = c->kill_at};
  size_t n = sizeof h + cl + 1 + dl + 1 + gl + 1;
  char *b = malloc(n);
  if (!b) return -1;
  memcpy(b, &h, sizeof h);
  memcpy(b + sizeof h, c->cmd, cl + 1);
  memcpy(b + sizeof h + cl + 1, dir, dl + 1);
  memcpy(b + sizeof h + cl + 1 + dl + 1, gpus, gl + 1);
  *buf = b, *len = n;
  return 0;
}

int farm_cmd_decode(const void *buf, size_t len, farm_cmd *c) {
  cmd_hdr h;
  if (!buf || len < sizeof h) return -1;
  memcpy(&h, buf, sizeof h);
  if (h.magic != CMD_MAGIC) return -1;
  if ((uint64_t)h.cmd_len + h.dir_len + h.gpus_len + 3 != len - sizeof h) return -1;
  const char *s = (const char *)buf + sizeof h, *d = s + h.cmd_len + 1, *g = d + h.dir_len + 1;
  if (s[h.cmd_len] != '\0' || d[h.dir_len] != '\0' || g[h.gpus_len] != '\0') return -1;
  if (memchr(s, '\0', h.cmd_len) || memchr(d, '\0', h.dir_len) || memchr(g, '\0', h.gpus_len))
    return -1;
  if (h.out_mode < FARM_OUT_GROUP || h.out_mode > FARM_OUT_PACK || h.cores < 1 || h.slots < 1)
    return -1;
  *c = (farm_cmd){.seq = h.seq,
                  .line = h.line,
                  .repeat = h.repeat,
                  .attempt = h.attempt,
                  .cores = h.cores,
                  .out_mode = h.out_mode,
                  .timeout = h.timeout,
                  .grace = h.grace,
                  .kill_at = h.kill_at,
                  .slots = h.slots,
                  .bind = h.bind,
                  .cmd = s,
                  .dir = d,
                  .gpus = g};
  return 0;
}

size_t farm_res_size(const farm_res *r) {
  return sizeof(res_hdr) + strlen(r->host) + 1 + strlen(r->where) + 1 + r->out_inline +
         r->err_inline;
}

void farm_res_encode(const farm_res *r, void *buf) {
  size_t hl = strlen(r->host), wl = strlen(r->where);
  res_hdr h = {.magic = RES_MAGIC,
               .host_len = (uint32_t)hl,
               .where_len = (uint32_t)wl,
               .attempt = r->attempt,
               .outcome = r->outcome,
               .exitval = r->exitval,
               .sig = r->sig,
               .pid = r->pid,
               .rank = r->rank,
               .slot = r->slot,
               .seq = r->seq,
               .start = r->start,
               .runtime = r->runtime,
               .out_len = r->out_len,
               .err_len = r->err_len,
               .pack_off = r->pack_off,
               .out_inline = r->out_inline,
               .err_inline = r->err_inline};
  char *b = buf;
  memcpy(b, &h, sizeof h), b += sizeof h;
  memcpy(b, r->host, hl + 1), b += hl + 1;
  memcpy(b, r->where, wl + 1), b += wl + 1;
  if (r->out_inline) memcpy(b, r->out, r->out_inline), b += r->out_inline;
  if (r->err_inline) memcpy(b, r->err, r->err_inline);
}

int farm_res_decode(const void *buf, size_t len, farm_res *r) {
  res_hdr h;
  if (!buf || len < sizeof h) return -1;
  memcpy(&h, buf, sizeof h);
  if (h.magic != RES_MAGIC || h.host_len > 4096 || h.where_len > 65536) return -1;
  if (h.out_inline > len || h.err_inline > len) return -1;
  uint64_t want =
      sizeof h + (uint64_t)h.host_len + 1 + h.where_len + 1 + h.out_inline + h.err_inline;
  if (want != len) return -1;
  if (h.outcome < 0 || h.outcome >= FARM_R_NOUTCOMES) return -1;
  const char *s = (const char *)buf + sizeof h;
  if (s[h.host_len] != '\0' || s[h.host_len + 1 + h.where_len] != '\0') return -1;
  *r = (farm_res){.seq = h.seq,
                  .attempt = h.attempt,
                  .outcome = h.outcome,
                  .exitval = h.exitval,
                  .sig = h.sig,
                  .pid = h.pid,
                  .rank = h.rank,
                  .slot = h.slot,
                  .start = h.start,
                  .runtime = h.runtime,
                  .out_len = h.out_len,
                  .err_len = h.err_len,
                  .pack_off = h.pack_off,
                  .host = s,
                  .where = s + h.host_len + 1,
                  .out_inline = h.out_inline,
                  .err_inline = h.err_inline};
  r->out = r->where + h.where_len + 1;
  r->err = r->out + h.out_inline;
  return 0;
}
