/* record.c: the record's format: printing a record, reading results files, the one writer of a
 * file, series keys (see record.h). */
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>


json_t *record_params(const attn_params *p)
{
    json_t *params = json_object();
    for (int i = 0; i < p->method->n_params; i++) {
        const attn_param_spec *spec = &p->method->params[i];
        char val[64];
        if (spec->kind == ATTN_PARAM_CHOICE || (spec->auto_ok && p->v[i] == ATTN_AUTO))
            json_object_set_new(params, spec->name,
                                json_string(attn_param_format(p, i, val, sizeof val)));
        else if (spec->kind == ATTN_PARAM_INT)
            json_object_set_new(params, spec->name, json_integer((json_int_t)p->v[i]));
        else
            json_object_set_new(params, spec->name, json_real(p->v[i]));
    }
    return params;
}

void record_print_json(FILE *f, const json_t *rec)
{
    char *text = json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (text) {
        fputs(text, f);
        fputc('\n', f);
        free(text);
    }
}

const char *record_bytes(double bytes, char *buf, size_t size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int u = 0;
    while (fabs(bytes) >= 1024 && u < 5) {
        bytes /= 1024;
        u++;
    }
    snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
    return buf;
}

static double num(const json_t *rec, const char *key)
{
    const json_t *v = json_object_get(rec, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static const char *bytes_of(const json_t *rec, const char *key, char *buf, size_t size)
{
    double v = num(rec, key);
    if (isnan(v))
        return "n/a";
    return record_bytes(v, buf, size);
}

/* What the point is: method, parameters, shape, id, the training stack, status. */
static void table_identity(FILE *f, const json_t *rec)
{
    const json_t *params = json_object_get(rec, "params");
    fprintf(f, "%-14s %s", "point", json_string_value(json_object_get(rec, "method")));
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)params, key, value)
    {
        /* as --param takes it back: n_buckets=auto, not n_buckets="auto" */
        char *t = json_is_string(value) ? NULL : json_dumps(value, JSON_ENCODE_ANY);
        fprintf(f, " %s=%s", key, t ? t : json_string_value(value));
        free(t);
    }
    const char *dtype = json_string_value(json_object_get(rec, "dtype"));
    fprintf(f, "  n=%.0f d=%.0f heads=%.0f batch=%.0f%s threads=%.0f inputs=%s dtype=%s\n",
            num(rec, "n"), num(rec, "d"), num(rec, "heads"), num(rec, "batch"),
            json_is_true(json_object_get(rec, "causal")) ? " causal" : "", num(rec, "threads"),
            json_string_value(json_object_get(rec, "inputs")), dtype ? dtype : "fp32");
    fprintf(f, "%-14s %s\n", "point_id", json_string_value(json_object_get(rec, "point_id")));
    if (json_is_string(json_object_get(rec, "stack"))) {
        char pb[32], ab[32];
        fprintf(f, "%-14s one training step of a %s stack of %.0f layers over %s attention, "
                   "d_model %.0f, d_ff %.0f; weights and gradients %s, model activations %s\n",
                "training", json_string_value(json_object_get(rec, "stack")), num(rec, "layers"),
                json_string_value(json_object_get(rec, "inner")), num(rec, "d_model"),
                num(rec, "d_ff"), bytes_of(rec, "param_bytes", pb, sizeof pb),
                bytes_of(rec, "model_activation_bytes", ab, sizeof ab));
        if (!isnan(num(rec, "loss")))
            fprintf(f, "%-14s %.6g\n", "loss", num(rec, "loss"));
    }
    const json_t *reason = json_object_get(rec, "reason");
    fprintf(f, "%-14s %s%s%s\n", "status", json_string_value(json_object_get(rec, "status")),
            json_is_string(reason) ? ": " : "",
            json_is_string(reason) ? json_string_value(reason) : "");
}

/* Time, throughput, peak RSS and the model's bytes (each rank's, for a ring). */
static void table_time_memory(FILE *f, const json_t *rec)
{
    char a[32], b[32], c[32], d[32];
    if (!isnan(num(rec, "wall_s")))
        fprintf(f, "%-14s %.4g s median of %.0f (min %.4g, max %.4g)\n", "wall time",
                num(rec, "wall_s"), num(rec, "reps"), num(rec, "wall_s_min"),
                num(rec, "wall_s_max"));
    if (!isnan(num(rec, "gflops")))
        fprintf(f, "%-14s %.1f GFLOP/s on the model's %.4g GFLOP\n", "throughput",
                num(rec, "gflops"), num(rec, "model_flops") / 1e9);
    fprintf(f, "%-14s %s (rss before inputs %s, before kernel %s; wait4 ru_maxrss %s)\n",
            "peak RSS", bytes_of(rec, "peak_rss_bytes", a, sizeof a),
            bytes_of(rec, "rss_before_inputs_bytes", b, sizeof b),
            bytes_of(rec, "rss_before_kernel_bytes", c, sizeof c),
            bytes_of(rec, "ru_maxrss_bytes", d, sizeof d));
    const json_t *ranks = json_object_get(rec, "ranks");
    fprintf(f, "%-14s %s (io %s + workspace %s)%s\n", "model bytes",
            bytes_of(rec, "model_bytes", a, sizeof a), bytes_of(rec, "model_io_bytes", b, sizeof b),
            bytes_of(rec, "model_workspace_bytes", c, sizeof c),
            json_is_object(ranks) ? " of the largest rank" : "");
    if (json_is_object(ranks)) { /* a ring over MPI processes: each rank's own numbers */
        fprintf(f, "%-14s %.0f MPI processes (%s); peak RSS summed over ranks %s\n", "ranks",
                num(ranks, "count"), json_string_value(json_object_get(ranks, "mpi")),
                bytes_of(ranks, "peak_rss_bytes_sum", a, sizeof a));
        size_t i;
        json_t *rk;
        json_array_foreach(json_object_get(ranks, "per_rank"), i, rk)
            fprintf(f, "%-14s rank %.0f: %.0f rows, peak RSS %s (model %s), sent %s per run "
                       "(model %s), waiting %.1f%% of the run\n",
                    "", num(rk, "rank"), num(rk, "rows"), bytes_of(rk, "peak_rss_bytes", a, sizeof a),
                    bytes_of(rk, "model_bytes", b, sizeof b), bytes_of(rk, "bytes_sent", c, sizeof c),
                    bytes_of(rk, "model_bytes_sent", d, sizeof d), 100 * num(rk, "wait_share"));
    }
}

/* The heap: jemalloc's peak and statistics, or why there are none. */
static void table_heap(FILE *f, const json_t *rec)
{
    char a[32], b[32], c[32], d[32], e[32];
    const json_t *je = json_object_get(rec, "jemalloc");
    const char *no_heap = json_string_value(
        json_object_get(json_object_get(rec, "unavailable"), "heap_peak_bytes"));
    if (no_heap)
        fprintf(f, "%-14s n/a: %s\n", "heap peak", no_heap);
    else
        fprintf(f, "%-14s %s (jemalloc thread.peak; allocated inside the repetitions: %s)\n",
                "heap peak", bytes_of(rec, "heap_peak_bytes", a, sizeof a),
                bytes_of(rec, "heap_kernel_alloc_bytes", b, sizeof b));
    if (json_is_object(je))
        fprintf(f, "%-14s allocated %s, active %s, resident %s, mapped %s, retained %s\n",
                "jemalloc", bytes_of(je, "allocated", a, sizeof a),
                bytes_of(je, "active", b, sizeof b), bytes_of(je, "resident", c, sizeof c),
                bytes_of(je, "mapped", d, sizeof d), bytes_of(je, "retained", e, sizeof e));
}

/* Hardware and software counters, and the ones unavailable grouped by reason. */
static void table_counters(FILE *f, const json_t *rec)
{
    const char *key;
    const json_t *value;
    const json_t *counters = json_object_get(rec, "counters");
    const json_t *unavail = json_object_get(rec, "counters_unavailable");
    json_object_foreach((json_t *)counters, key, value)
    {
        if (json_is_number(value) && strncmp(key, "sde:::attn::", 12) != 0) /* under work */
            fprintf(f, "%-14s %-22s %.6g per repetition\n", "counter", key,
                    json_number_value(value));
    }
    /* unavailable counters, grouped by reason (on a VM they all share one) */
    json_t *done = json_object();
    json_object_foreach((json_t *)unavail, key, value)
    {
        const char *why = json_string_value(value);
        if (!why || json_object_get(done, why))
            continue;
        json_object_set_new(done, why, json_true());
        fprintf(f, "%-14s", "unavailable");
        const char *k2;
        json_t *v2;
        int first = 1;
        json_object_foreach((json_t *)unavail, k2, v2)
        {
            if (json_is_string(v2) && strcmp(json_string_value(v2), why) == 0) {
                fprintf(f, "%s%s", first ? " " : ", ", k2);
                first = 0;
            }
        }
        fprintf(f, ":\n%-14s %s\n", "", why);
    }
    json_decref(done);
}

/* The attention library's own work counters. */
static void table_work(FILE *f, const json_t *rec)
{
    const json_t *work = json_object_get(rec, "work");
    if (json_is_object(work)) {
        fprintf(f, "%-14s scores %.6g per repetition, %.4g per token", "work",
                num(json_object_get(work, "counted"), "SCORES"), num(work, "scores_per_token"));
        if (json_is_number(json_object_get(work, "model_scores")))
            fprintf(f, " (model %.6g: counted %.4fx, unmasked %.4fx)", num(work, "model_scores"),
                    num(work, "scores_vs_model"), num(work, "unmasked_vs_model"));
        if (json_is_integer(json_object_get(work, "duplicates")))
            fprintf(f, "; duplicate candidates %.6g (%.2g%% of the scores)",
                    num(work, "duplicates"), 100 * num(work, "duplicates_share"));
        fprintf(f, "\n%-14s", "");
        const char *name;
        json_t *v;
        int shown = 0;
        json_object_foreach((json_t *)json_object_get(work, "counted"), name, v)
        {
            if (strcmp(name, "SCORES") != 0 && json_number_value(v) != 0)
                fprintf(f, "%s%s %.6g", shown++ ? ", " : " ", name, json_number_value(v));
        }
        fprintf(f, "%s (sde:::attn:: counters, per repetition)\n", shown ? "" : " nothing else");
    }
}

/* getrusage over the repetitions. */
static void table_rusage(FILE *f, const json_t *rec)
{
    const json_t *ru = json_object_get(rec, "rusage");
    if (json_is_object(ru)) {
        fprintf(f, "%-14s cpu %.4g s (user %.4g, system %.4g), faults %.6g minor / %.6g major",
                "rusage", num(ru, "cpu_s"), num(ru, "user_s"), num(ru, "system_s"),
                num(ru, "minor_faults"), num(ru, "major_faults"));
        if (!isnan(num(ru, "voluntary_switches")))
            fprintf(f, ", context switches %.6g / %.6g involuntary", num(ru, "voluntary_switches"),
                    num(ru, "involuntary_switches"));
        const char *source = json_string_value(json_object_get(ru, "source"));
        fprintf(f, ", per repetition (%s)\n", source ? source : "getrusage");
    }
}

/* The error against the exact reference, the external program, the harness's own cost. */
/* One error line: err_vs_exact or err_vs_fp32. */
static void table_error(FILE *f, const json_t *err, const char *label)
{
    if (json_is_string(json_object_get(err, "error")))
        fprintf(f, "%-14s not measured: %s\n", label,
                json_string_value(json_object_get(err, "error")));
    else if (json_is_object(err))
        fprintf(f, "%-14s max %.3g, mean %.3g, rel_fro %.3g (%s; reference %s, %.3g s)\n", label,
                num(err, "max_rel"), num(err, "mean_rel"), num(err, "rel_fro"),
                json_string_value(json_object_get(err, "metric")),
                json_string_value(json_object_get(err, "reference")), num(err, "reference_s"));
}

static void table_accuracy_peer(FILE *f, const json_t *rec)
{
    table_error(f, json_object_get(rec, "err_vs_exact"), "error vs exact");
    table_error(f, json_object_get(rec, "err_vs_fp32"), "error vs fp32");
    const json_t *peer = json_object_get(rec, "peer");
    if (json_is_object(peer)) {
        char *ctx = json_dumps(json_object_get(peer, "context"), JSON_COMPACT | JSON_ENCODE_ANY);
        fprintf(f, "%-14s %s, implements %s; %s\n%-14s %s\n", "program",
                json_string_value(json_object_get(peer, "program")),
                json_string_value(json_object_get(peer, "implements")),
                json_string_value(json_object_get(peer, "measured")), "", ctx ? ctx : "");
        free(ctx);
    }
    const json_t *h = json_object_get(rec, "harness");
    if (json_is_object(h) && json_object_get(h, "probe_s"))
        fprintf(f, "%-14s probes opened in %.3g s, inputs %.3g s, warm-up %.3g s, probes %.2g s "
                   "(%.2g%% of the timed repetitions)\n",
                "harness", num(h, "probes_open_s"), num(h, "inputs_s"), num(h, "warmup_s"),
                num(h, "probe_s"), 100 * num(h, "probe_fraction"));
}

void record_print_table(FILE *f, const json_t *rec)
{
    table_identity(f, rec);
    table_time_memory(f, rec);
    table_heap(f, rec);
    table_counters(f, rec);
    table_work(f, rec);
    table_rusage(f, rec);
    table_accuracy_peer(f, rec);
}

static int is_record(const json_t *r)
{
    const char *schema = json_string_value(json_object_get(r, "schema"));
    return json_is_object(r) && schema && strncmp(schema, "attnbench/", 10) == 0 &&
           json_is_string(json_object_get(r, "point_id"));
}

int record_file_read(const char *path, bool missing_ok, record_file *rf, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        memset(rf, 0, sizeof *rf);
        if (missing_ok && errno == ENOENT) {
            rf->records = json_array();
            return 0;
        }
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    int rc = record_file_read_stream(f, path, rf, err, errlen);
    fclose(f);
    return rc;
}

int record_file_read_stream(FILE *f, const char *path, record_file *rf, char *err,
                            size_t errlen)
{
    memset(rf, 0, sizeof *rf);
    rf->records = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, pos = 0;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        int complete = line[len - 1] == '\n';
        json_error_t jerr;
        json_t *r = json_loadb(line, (size_t)len, 0, &jerr);
        if (r && is_record(r) && complete) {
            json_array_append_new(rf->records, r);
            pos += len;
            rf->good_bytes = pos;
            continue;
        }
        json_decref(r);
        int last = fgetc(f) == EOF;
        int ours = lineno > 1 || strncmp(line, "{\"schema\":\"attnbench/", 21) == 0;
        if (last && (!complete || !r) && ours) {
            rf->torn_line = lineno; /* a write cut short by a kill or crash */
            rf->torn_bytes = len;
            break;
        }
        if (lineno == 1)
            snprintf(err, errlen, "%s: not an attnbench results file (line 1 is not a record "
                     "with schema attnbench/...)", path);
        else
            snprintf(err, errlen, "%s:%ld: not an attnbench record (%s)", path, lineno,
                     r ? "no schema/point_id" : jerr.text);
        rc = -1;
        break;
    }
    free(line);
    if (rc)
        record_file_free(rf);
    return rc;
}

void record_file_free(record_file *rf)
{
    json_decref(rf->records);
    rf->records = NULL;
}

int record_append(int fd, const json_t *rec)
{
    char *text = json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!text)
        return -1;
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the terminator: one line */
    const off_t start = lseek(fd, 0, SEEK_END);
    size_t done = 0;
    int err = 0;
    while (done < len + 1) {
        /* a short write sets no errno: writing the rest gives the real cause (ENOSPC ...) */
        ssize_t w = write(fd, text + done, len + 1 - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            err = w < 0 ? errno : EIO;
            break;
        }
        done += (size_t)w;
    }
    free(text);
    if (!err && fdatasync(fd) != 0)
        err = errno;
    if (err) {
        if (start >= 0 && ftruncate(fd, start) == 0) /* no torn line: the file ends on a record */
            fdatasync(fd);
        errno = err;
        return -1;
    }
    return 0;
}

static void writer_note_path(const char *path, char *buf, size_t size)
{
    snprintf(buf, size, "%s.writer", path);
}

/* Who holds path's lock, as its note says; "another process" when the note is unreadable.
 * Returns the note's pid when it names a process on this host that no longer exists (a stale
 * note), else 0. */
static int read_writer_note(const char *path, char *who, size_t size)
{
    char note[1100];
    writer_note_path(path, note, sizeof note);
    snprintf(who, size, "another process");
    FILE *f = fopen(note, "r");
    if (!f)
        return 0;
    char line[512], host[256] = "", here[256] = "";
    int pid = 0, gone = 0;
    if (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        snprintf(who, size, "%s", line);
        gethostname(here, sizeof here);
        gone = sscanf(line, "pid %d on %255s", &pid, host) == 2 && strcmp(host, here) == 0 &&
               pid > 0 && kill(pid, 0) != 0 && errno == ESRCH;
    }
    fclose(f);
    return gone ? pid : 0;
}

/* The writers' descriptors a forked child must not keep: a flock belongs to the open file,
 * which a child shares, so a point's child (forked to measure, holding GiBs it takes time to
 * free) would keep the results file locked after a killed sweep, and its --resume would be
 * refused. A child drops its copies at fork; the parent's lock is untouched. */
enum { MAX_WRITERS = 16 };
static int writer_fds[MAX_WRITERS];
static int writer_count;

static void drop_writers_in_child(void)
{
    for (int i = 0; i < writer_count; i++)
        close(writer_fds[i]);
    writer_count = 0;
}

static void writers_track(int fd, int add)
{
    static int registered;
    if (add) {
        if (!registered)
            registered = pthread_atfork(NULL, NULL, drop_writers_in_child) == 0;
        if (writer_count < MAX_WRITERS)
            writer_fds[writer_count++] = fd;
        return;
    }
    for (int i = 0; i < writer_count; i++)
        if (writer_fds[i] == fd) {
            writer_fds[i] = writer_fds[--writer_count];
            break;
        }
}

int record_writer_open(record_writer *w, const char *path, char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    w->fd = -1;
    snprintf(w->path, sizeof w->path, "%s", path);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char who[512];
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int stale = read_writer_note(path, who, sizeof who);
        if (stale)
            snprintf(err, errlen, "%s is still locked, though its writer (%s) is gone: a process "
                     "it started still holds the file; retry when it has exited", path, who);
        else
            snprintf(err, errlen, "%s is being written by %s; wait for it, or choose another "
                     "--out (one writer per results file)", path, who);
        close(fd);
        return -1;
    }
    if (read_writer_note(path, who, sizeof who))
        fprintf(stderr, "attnbench: %s: its writer note (%s) is stale, that process is gone; "
                        "taking the file over\n", path, who);
    w->fd = fd;
    writers_track(fd, 1);
    char note[1100], host[256] = "?", date[64];
    writer_note_path(path, note, sizeof note);
    gethostname(host, sizeof host);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* the note only names the holder for another writer's message: a sweep goes on without */
    FILE *f = fopen(note, "w");
    const int noted = f && fprintf(f, "pid %d on %s since %s\n", (int)getpid(), host, date) > 0;
    if (!f || fclose(f) != 0 || !noted)
        fprintf(stderr, "attnbench: warning: cannot write %s (%s); another writer of %s will not "
                        "learn who holds it\n", note, strerror(errno), path);
    return 0;
}

void record_writer_close(record_writer *w)
{
    if (w->fd < 0)
        return;
    char note[1100];
    writer_note_path(w->path, note, sizeof note);
    unlink(note); /* before the lock goes: a note always belongs to a live holder */
    writers_track(w->fd, 0);
    close(w->fd);
    w->fd = -1;
}

int record_file_busy(const char *path, char *who, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int busy = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    if (busy)
        read_writer_note(path, who, size);
    return busy;
}

json_t *record_index(json_t *records)
{
    json_t *index = json_object();
    size_t i;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        const char *id = json_string_value(json_object_get(rec, "point_id"));
        if (id)
            json_object_set(index, id, rec);
    }
    return index;
}

void record_series_key(const char *key, const char *field, char *buf, size_t size)
{
    const size_t flen = strlen(field);
    size_t len = 0;
    buf[0] = '\0';
    for (const char *p = key; *p;) {
        const size_t tok = strcspn(p, ";");
        const int skip = tok > flen && strncmp(p, field, flen) == 0 && p[flen] == '=';
        if (!skip && len + tok + 2 < size) {
            memcpy(buf + len, p, tok);
            len += tok;
            buf[len++] = ';';
            buf[len] = '\0';
        }
        p += tok + (p[tok] == ';');
    }
}
