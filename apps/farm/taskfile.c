/* taskfile.c: what mpx-farm runs: task files with directives, or a command template over
 * argument lines, as GNU parallel users type it.
 *
 * Task file: one shell command a line; blank lines and lines starting with '#' are skipped; a line
 * ending in a backslash continues on the next. Directives are comments that start with "#MPX" or
 * "#DISBATCH" (disBatch's spelling works unchanged):
 *   PREFIX text          put text before every following command (empty text: none)
 *   SUFFIX text          put text after every following command
 *   REPEAT n [start s] [step k] [command]
 *                        n tasks, MPX_FARM_REPEAT = s, s+k, ...; without a command it repeats the
 *                        next command line
 *   BARRIER [CHECK]      the tasks after it start when every task before it is done; with CHECK,
 *                        the run stops there if any of them failed
 *   CORES n              the following commands need n cores each
 * With --core-counts every command line starts with "N," (pylauncher's format): N cores.
 * An unknown directive, a bad number, a REPEAT or a continuation with nothing after it is an
 * error: one line "mpx-farm: FILE:LINE: what" on stderr, and the caller exits 2 before anything
 * runs.
 * Template: the command with {} (the argument), {#} (seq), {.} (without extension), {/}
 * (basename), {//} (dirname), {/.} (basename without extension); " {}" is appended when the
 * template has no replacement string. An argument with shell metacharacters is single-quoted.
 * Single-threaded (the coordinator, before anything runs). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "farm.h"

uint64_t farm_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static int bad(const char *file, long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(const char *file, long line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (line > 0)
    fprintf(stderr, "mpx-farm: %s:%ld: ", file, line);
  else
    fprintf(stderr, "mpx-farm: %s: ", file);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return -1;
}

/* Read a whole file ("-": stdin) into a NUL-terminated buffer. */
static char *slurp(const char *path, size_t *len) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    if (n + 1 >= cap) {
      char *nb = realloc(buf, cap *= 2);
      if (!nb) {
        free(buf), buf = NULL;
        break;
      }
      buf = nb;
    }
    size_t r = fread(buf + n, 1, cap - n - 1, f);
    n += r;
    if (r == 0) break;
  }
  int err = ferror(f);
  if (f != stdin) fclose(f);
  if (!buf || err) {
    free(buf);
    errno = err ? EIO : ENOMEM;
    return NULL;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

static int add_task(farm_list *l, long line, int repeat, int cores, char *cmd, char *tag) {
  if (l->n == l->cap) {
    long cap = l->cap ? l->cap * 2 : 1024;
    farm_task *nt = realloc(l->tasks, (size_t)cap * sizeof *nt);
    if (!nt) return -1;
    l->tasks = nt, l->cap = cap;
  }
  farm_task *t = &l->tasks[l->n];
  memset(t, 0, sizeof *t);
  t->seq = ++l->n;
  t->line = line, t->repeat = repeat, t->cores = cores, t->cmd = cmd, t->tag = tag;
  t->hash = farm_hash(cmd);
  return 0;
}

static int add_barrier(farm_list *l, long line, int check) {
  if (l->nbarriers == l->bcap) {
    long cap = l->bcap ? l->bcap * 2 : 16;
    farm_barrier *nb = realloc(l->barriers, (size_t)cap * sizeof *nb);
    if (!nb) return -1;
    l->barriers = nb, l->bcap = cap;
  }
  l->barriers[l->nbarriers++] = (farm_barrier){.before = l->n, .line = line, .check = check};
  return 0;
}

static char *concat3(const char *a, const char *b, const char *c) {
  size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
  char *s = malloc(la + lb + lc + 1);
  if (!s) return NULL;
  memcpy(s, a, la), memcpy(s + la, b, lb), memcpy(s + la + lb, c, lc + 1);
  return s;
}

/* A non-negative number with nothing after it; -1 otherwise. */
static long number(const char *s) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < 0) return -1;
  return v;
}

/* Next whitespace-separated word of *p (NUL-terminated in place), or NULL. */
static char *word(char **p) {
  char *s = *p;
  while (*s == ' ' || *s == '\t') s++;
  if (!*s) return *p = s, NULL;
  char *w = s;
  while (*s && *s != ' ' && *s != '\t') s++;
  if (*s) *s++ = '\0';
  *p = s;
  return w;
}

typedef struct parse_state {
  const char *file;
  char *prefix, *suffix;
  int cores, core_counts;
  long repeat_n, repeat_start, repeat_step, repeat_line; /* repeat_n >= 0: a REPEAT is pending */
} parse_state;

static int add_command(farm_list *l, parse_state *ps, long line, const char *text) {
  long n = ps->repeat_n >= 0 ? ps->repeat_n : 1;
  int cores = ps->cores;
  if (ps->core_counts) { /* pylauncher's "N,command" */
    char *end;
    errno = 0;
    long c = strtol(text, &end, 10);
    if (errno || end == text || *end != ',' || c < 1 || c > 4096)
      return bad(ps->file, line, "--core-counts: the line must start with N, (1 to 4096 cores)");
    cores = (int)c;
    text = end + 1;
  }
  for (long i = 0; i < n; i++) {
    char *cmd = concat3(ps->prefix, text, ps->suffix);
    if (!cmd) return -1;
    int rep = ps->repeat_n >= 0 ? (int)(ps->repeat_start + i * ps->repeat_step) : -1;
    if (add_task(l, line, rep, cores, cmd, cmd) < 0) return free(cmd), -1;
  }
  ps->repeat_n = -1;
  return 0;
}

static int directive(farm_list *l, parse_state *ps, long line, char *rest) {
  char *kw = word(&rest);
  if (!kw) return bad(ps->file, line, "empty directive");
  if (ps->repeat_n >= 0)
    return bad(ps->file, line, "%s directive where the command of the REPEAT on line %ld belongs",
               kw, ps->repeat_line);
  while (*rest == ' ' || *rest == '\t') rest++;
  if (strcmp(kw, "PREFIX") == 0 || strcmp(kw, "SUFFIX") == 0) {
    char *s = strdup(rest);
    if (!s) return -1;
    char **slot = kw[0] == 'P' ? &ps->prefix : &ps->suffix;
    free(*slot);
    *slot = s;
    return 0;
  }
  if (strcmp(kw, "BARRIER") == 0) {
    char *w = word(&rest);
    int check = 0;
    if (w && strcmp(w, "CHECK") == 0)
      check = 1;
    else if (w)
      return bad(ps->file, line, "BARRIER takes only CHECK, not '%s'", w);
    return add_barrier(l, line, check);
  }
  if (strcmp(kw, "CORES") == 0) {
    char *w = word(&rest);
    long v = w ? number(w) : -1;
    if (v < 1 || v > 4096 || word(&rest))
      return bad(ps->file, line, "CORES needs one number from 1 to 4096");
    ps->cores = (int)v;
    return 0;
  }
  if (strcmp(kw, "REPEAT") == 0) {
    char *w = word(&rest);
    long n = w ? number(w) : -1, start = 0, step = 1;
    if (n < 0 || n > 10000000) return bad(ps->file, line, "REPEAT needs a count (0 to 10^7)");
    for (;;) {
      while (*rest == ' ' || *rest == '\t') rest++;
      int is_start = strncmp(rest, "start", 5) == 0 && (rest[5] == ' ' || rest[5] == '\t');
      int is_step = strncmp(rest, "step", 4) == 0 && (rest[4] == ' ' || rest[4] == '\t');
      if (!is_start && !is_step) break;
      rest += is_start ? 5 : 4;
      char *v = word(&rest);
      char *end;
      errno = 0;
      long x = v ? strtol(v, &end, 10) : 0;
      if (!v || errno || *end)
        return bad(ps->file, line, "REPEAT %s needs a number", is_start ? "start" : "step");
      if (is_start)
        start = x;
      else
        step = x;
    }
    while (*rest == ' ' || *rest == '\t') rest++;
    ps->repeat_n = n, ps->repeat_start = start, ps->repeat_step = step, ps->repeat_line = line;
    if (*rest) return add_command(l, ps, line, rest);
    return 0;
  }
  return bad(ps->file, line, "unknown directive '%s' (PREFIX, SUFFIX, REPEAT, BARRIER, CORES)", kw);
}

static int load_taskfile(const char *path, int core_counts, farm_list *l) {
  size_t len;
  char *buf = slurp(path, &len);
  const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
  if (!buf) return bad(name, 0, "cannot read the task file: %s", strerror(errno));
  if (memchr(buf, '\0', len)) return free(buf), bad(name, 0, "the task file contains a NUL byte");
  parse_state ps = {.file = name,
                    .prefix = strdup(""),
                    .suffix = strdup(""),
                    .cores = 1,
                    .repeat_n = -1,
                    .core_counts = core_counts};
  int rc = ps.prefix && ps.suffix ? 0 : -1;
  long lineno = 0;
  char *p = buf;
  while (rc == 0 && *p) {
    long first = ++lineno;
    char *start = p, *w = p;
    /* one logical line: join "\\\n" continuations, drop \r before \n */
    for (;;) {
      char *nl = strchr(p, '\n');
      char *end = nl ? nl : p + strlen(p);
      size_t n = (size_t)(end - p);
      if (n && p[n - 1] == '\r') n--;
      int cont = n && p[n - 1] == '\\';
      if (cont) n--;
      memmove(w, p, n);
      w += n;
      p = nl ? nl + 1 : end;
      if (!cont) break;
      if (!nl || !*p) {
        rc = bad(name, first,
                 "unterminated line: a backslash continues it past the end of the file");
        break;
      }
      lineno++;
    }
    if (rc) break;
    *w = '\0';
    char *s = start;
    while (isspace((unsigned char)*s)) s++;
    if (!*s) continue;
    if (*s == '#') {
      if (strncmp(s, "#MPX", 4) == 0 && (s[4] == ' ' || s[4] == '\t' || !s[4]))
        rc = directive(l, &ps, first, s + 4);
      else if (strncmp(s, "#DISBATCH", 9) == 0 && (s[9] == ' ' || s[9] == '\t' || !s[9]))
        rc = directive(l, &ps, first, s + 9);
      continue;
    }
    rc = add_command(l, &ps, first, start);
  }
  if (rc == 0 && ps.repeat_n >= 0)
    rc = bad(name, ps.repeat_line, "unterminated REPEAT directive: no command follows it");
  free(ps.prefix), free(ps.suffix), free(buf);
  return rc;
}

/* ---- templates ----------------------------------------------------------------------------- */

static int needs_quote(const char *s) {
  if (!*s) return 1;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && !strchr("_-+=.,/:@%^", *s)) return 1;
  return 0;
}

typedef struct sbuf {
  char *p;
  size_t n, cap;
} sbuf;

static int sb_add(sbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = (b->n + n + 1) * 2;
    char *np = realloc(b->p, cap);
    if (!np) return -1;
    b->p = np, b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
  return 0;
}

static int sb_quoted(sbuf *b, const char *s, size_t n) {
  char *v = strndup(s, n);
  if (!v) return -1;
  int rc = 0;
  if (!needs_quote(v))
    rc = sb_add(b, v, n);
  else {
    rc = sb_add(b, "'", 1);
    for (const char *c = v; rc == 0 && *c; c++)
      rc = *c == '\'' ? sb_add(b, "'\\''", 4) : sb_add(b, c, 1);
    if (rc == 0) rc = sb_add(b, "'", 1);
  }
  free(v);
  return rc;
}

static char *fill_template(const char *tmpl, const char *arg, long seq) {
  sbuf b = {0};
  const char *base = strrchr(arg, '/');
  base = base ? base + 1 : arg;
  size_t alen = strlen(arg), blen = strlen(base);
  const char *dot = strrchr(base, '.');
  size_t noext = dot && dot != base ? (size_t)(dot - arg) : alen;
  size_t bnoext = dot && dot != base ? (size_t)(dot - base) : blen;
  int rc = 0;
  for (const char *p = tmpl; rc == 0 && *p;) {
    if (strncmp(p, "{}", 2) == 0)
      rc = sb_quoted(&b, arg, alen), p += 2;
    else if (strncmp(p, "{#}", 3) == 0) {
      char num[32];
      rc = sb_add(&b, num, (size_t)snprintf(num, sizeof num, "%ld", seq)), p += 3;
    } else if (strncmp(p, "{.}", 3) == 0)
      rc = sb_quoted(&b, arg, noext), p += 3;
    else if (strncmp(p, "{/.}", 4) == 0)
      rc = sb_quoted(&b, base, bnoext), p += 4;
    else if (strncmp(p, "{//}", 4) == 0) {
      size_t dl = base > arg ? (size_t)(base - arg - 1) : 0;
      rc = dl ? sb_quoted(&b, arg, dl) : sb_add(&b, ".", 1), p += 4;
    } else if (strncmp(p, "{/}", 3) == 0)
      rc = sb_quoted(&b, base, blen), p += 3;
    else
      rc = sb_add(&b, p, 1), p++;
  }
  if (rc) return free(b.p), NULL;
  return b.p ? b.p : strdup("");
}

static int has_replacement(const char *t) {
  static const char *const rs[] = {"{}", "{#}", "{.}", "{/}", "{//}", "{/.}"};
  for (size_t i = 0; i < sizeof rs / sizeof *rs; i++)
    if (strstr(t, rs[i])) return 1;
  return 0;
}

static int template_arg(farm_list *l, const char *tmpl, long line, const char *arg) {
  char *cmd = fill_template(tmpl, arg, l->n + 1);
  char *tag = strdup(arg);
  if (!cmd || !tag || add_task(l, line, -1, 1, cmd, tag) < 0) return free(cmd), free(tag), -1;
  return 0;
}

static int load_template(const farm_input *in, farm_list *l) {
  char *tmpl = has_replacement(in->tmpl) ? strdup(in->tmpl) : concat3(in->tmpl, " ", "{}");
  if (!tmpl) return -1;
  int rc = 0;
  if (in->nargs > 0 || (!in->argfile && in->args)) {
    for (int i = 0; rc == 0 && i < in->nargs; i++) rc = template_arg(l, tmpl, i + 1, in->args[i]);
  } else {
    const char *path = in->argfile ? in->argfile : "-";
    size_t len;
    char *buf = slurp(path, &len);
    if (!buf) rc = bad(path, 0, "cannot read the argument file: %s", strerror(errno));
    long lineno = 0;
    for (char *p = buf; rc == 0 && p && *p;) {
      char *nl = strchr(p, '\n');
      if (nl) *nl = '\0';
      size_t n = strlen(p);
      if (n && p[n - 1] == '\r') p[--n] = '\0';
      lineno++;
      rc = template_arg(l, tmpl, lineno, p);
      p = nl ? nl + 1 : p + n;
    }
    free(buf);
  }
  free(tmpl);
  return rc;
}

int farm_list_load(const farm_input *in, farm_list *out) {
  memset(out, 0, sizeof *out);
  int rc =
      in->taskfile ? load_taskfile(in->taskfile, in->core_counts, out) : load_template(in, out);
  if (rc) {
    if (errno == ENOMEM) fprintf(stderr, "mpx-farm: out of memory reading the tasks\n");
    farm_list_free(out);
  }
  return rc;
}

void farm_list_free(farm_list *l) {
  for (long i = 0; i < l->n; i++) {
    if (l->tasks[i].tag != l->tasks[i].cmd) free(l->tasks[i].tag);
    free(l->tasks[i].cmd);
  }
  free(l->tasks), free(l->barriers);
  memset(l, 0, sizeof *l);
}
