/* table_peers.c: tables that set runs of different kinds side by side: ours against the
 * external programs of the same mechanism, ring points over MPI ranks, and what a ring would
 * take on a real cluster at the rate measured here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"
#include "tables.h"

/* ---- peers ---------------------------------------------------------------------------------- */

/* The record of series s at n, or NULL. */
static const json_t *at_n(const report_series *s, double n)
{
    for (size_t y = 0; y < json_array_size(s->points); y++)
        if (report_num(json_array_get(s->points, y), "n") == n)
            return json_array_get(s->points, y);
    return NULL;
}

static void peer_row(FILE *md, const report_series *a, const report_series *b, const json_t *ra,
                     const json_t *rb, int with_mechanism)
{
    char ma[32], mb[32];
    report_fmt_bytes(report_num(ra, "peak_rss_bytes"), ma, sizeof ma);
    report_fmt_bytes(report_num(rb, "peak_rss_bytes"), mb, sizeof mb);
    const int busy = report_is_busy(ra) || report_is_busy(rb);
    if (with_mechanism)
        fprintf(md, "| %s ", report_mechanism(a));
    fprintf(md, "| %s | %s | %.0f | %.4g | %.4g | %.3g%s | %s | %s | %.3g |\n", a->label, b->label,
            report_num(ra, "n"), report_num(ra, "wall_s"), report_num(rb, "wall_s"),
            report_num(ra, "wall_s") / report_num(rb, "wall_s"), busy ? " (busy)" : "", ma, mb,
            report_num(ra, "peak_rss_bytes") / report_num(rb, "peak_rss_bytes"));
}

/* Ours against each peer of the same mechanism and shape, at every n both measured (or, with
 * largest_only, the largest such n); with d->mechanism, that mechanism's pairs only. */
int table_peers(FILE *md, const report_data *d, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    const int with_mechanism = !d->mechanism;
    int header = 0;
    for (int a = 0; a < d->ns; a++) {
        const report_series *sa = &d->s[a];
        if (report_is_peer(sa) || (d->mechanism && strcmp(report_mechanism(sa), d->mechanism)))
            continue;
        for (int b = 0; b < d->ns; b++) {
            const report_series *sb = &d->s[b];
            if (!report_is_peer(sb) || strcmp(report_mechanism(sa), report_mechanism(sb)) != 0 ||
                !report_same_shape(sa, sb))
                continue;
            const json_t *last_a = NULL, *last_b = NULL;
            for (size_t x = 0; x < json_array_size(sa->points); x++) {
                const json_t *ra = json_array_get(sa->points, x);
                const json_t *rb = at_n(sb, report_num(ra, "n"));
                if (!rb || !report_is_ok(ra) || !report_is_ok(rb))
                    continue;
                if (!header)
                    fprintf(md, "%s| ours | peer | n | time ours (s) | time theirs (s) | time ratio "
                                "| peak RSS ours | peak RSS theirs | RSS ratio |\n%s"
                                "|---|---|---|---|---|---|---|---|---|\n",
                            with_mechanism ? "| mechanism " : "", with_mechanism ? "|---" : "");
                header = 1;
                if (d->largest_only)
                    last_a = ra, last_b = rb;
                else
                    peer_row(md, sa, sb, ra, rb, with_mechanism);
            }
            if (last_a)
                peer_row(md, sa, sb, last_a, last_b, with_mechanism);
        }
    }
    return 0;
}

/* What each peer ran: the versions, threads and kernels it reported of itself (the first ok
 * point of its series; every point of a run reports the same). */
int table_peer_context(FILE *md, const report_data *d, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    int header = 0;
    for (int k = 0; k < d->ns; k++) {
        const json_t *r = report_first_ok(&d->s[k]);
        if (!report_is_peer(&d->s[k]) || !r)
            continue;
        if (!header)
            fprintf(md, "| peer | implements | what it reported |\n|---|---|---|\n");
        header = 1;
        fprintf(md, "| %s | %s |", d->s[k].label, report_str(r, "implements"));
        const char *key;
        json_t *v;
        int first = 1;
        json_object_foreach(json_object_get(json_object_get((json_t *)r, "peer"), "context"), key, v)
        {
            char *text = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            fprintf(md, "%s %s: %s", first ? "" : ";", key, text ? text : json_string_value(v));
            first = 0;
            free(text);
        }
        fprintf(md, " |\n");
    }
    return 0;
}

/* ---- ranks ---------------------------------------------------------------------------------- */

int table_ranks(FILE *md, const report_data *d, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    size_t i, count = 0;
    json_t *rec;
    json_array_foreach(d->records, i, rec)
    {
        const json_t *rk = json_object_get(rec, "ranks");
        if (!json_is_object(rk) || !report_is_ok(rec))
            continue;
        if (!count++)
            fprintf(md, "| n | causal | P | threads/rank | time (s) | peak RSS / rank "
                        "| model / rank | peak RSS, sum | sent / rank | waiting |\n"
                        "|---|---|---|---|---|---|---|---|---|---|\n");
        char a[32], b[32], c[32], e[32];
        report_fmt_bytes(report_num(rec, "peak_rss_bytes"), a, sizeof a);
        report_fmt_bytes(report_num(rec, "model_bytes"), b, sizeof b);
        report_fmt_bytes(report_num(rk, "peak_rss_bytes_sum"), c, sizeof c);
        report_fmt_bytes(report_num(rk, "bytes_sent_max"), e, sizeof e);
        size_t r;
        json_t *per;
        int as_model = 1;
        json_array_foreach(json_object_get(rk, "per_rank"), r, per)
            as_model &= report_num(per, "bytes_sent") == report_num(per, "model_bytes_sent");
        fprintf(md, "| %.0f | %s | %.0f | %.0f | %.4g | %s | %s | %s | %s%s | %.1f%% |\n",
                report_num(rec, "n"), json_is_true(json_object_get(rec, "causal")) ? "yes" : "no",
                report_num(rk, "count"), report_num(rec, "threads"), report_num(rec, "wall_s"), a,
                b, c, e, as_model ? " =" : " (model differs)", 100 * report_num(rk, "wait_share_max"));
    }
    return 0;
}

/* ---- ring attention on a cluster ------------------------------------------------------------ */

/* The model (Ring Attention, Liu et al. 2023, section 3; fp32, one head of width d, non-causal):
 * each of P nodes holds c = n / P rows. A step computes its c queries against one block of c
 * keys, 4 d c^2 FLOPs at the node's rate R, while the next block (K and V: 8 c d bytes) crosses
 * a link of bandwidth W. Compute hides the transfer when 4 d c^2 / R >= 8 c d / W, that is when
 * c >= 2 R / W rows (d cancels: a block's work grows as c^2, its bytes as c). The P steps then
 * take 4 d n^2 / (P R): exact attention's work split P ways. Otherwise the link sets the pace:
 * P (8 c d / W + latency). R is measured: the fastest non-causal ring point of the records. */
static const struct {
    const char *name;
    double bytes_per_s;
} links[] = {{"10 GbE", 10e9 / 8}, {"25 GbE", 25e9 / 8}, {"100 GbE", 100e9 / 8},
             {"InfiniBand HDR (200 Gb/s)", 200e9 / 8}};
#define LATENCY_S 5e-6 /* per message, a typical MPI latency over Ethernet */

static void fmt_duration(double s, char *buf, size_t size)
{
    if (s < 120)
        snprintf(buf, size, "%.1f s", s);
    else if (s < 7200)
        snprintf(buf, size, "%.1f min", s / 60);
    else
        snprintf(buf, size, "%.1f h", s / 3600);
}

int table_ring_model(FILE *md, const report_data *d, char *err, size_t errlen)
{
    const json_t *best = NULL;
    size_t i;
    json_t *r;
    json_array_foreach(d->records, i, r)
        if (report_is_ok(r) && !json_is_true(json_object_get(r, "causal")) &&
            strcmp(report_str(r, "method"), "ring") == 0 && report_num(r, "gflops") > 0 &&
            (!best || report_num(r, "gflops") > report_num(best, "gflops")))
            best = r;
    if (!best) {
        snprintf(err, errlen, "ring-model needs an ok non-causal ring point");
        return -1;
    }
    const double R = report_num(best, "gflops") * 1e9, dh = report_num(best, "d");
    const double ranks = report_num(json_object_get(best, "ranks"), "count");
    const json_t *ctx = json_object_get(best, "context");
    fprintf(md, "Measured rate R = %.1f GFLOP/s: ring at n = %.0f, d = %.0f, %.0f rank(s) x %.0f "
                "thread(s) on %s (%.0f cores), point %s.\n\n",
            R / 1e9, report_num(best, "n"), dh, isfinite(ranks) ? ranks : 1,
            report_num(best, "threads"), report_str(ctx, "cpu_model"), report_num(ctx, "cores"),
            report_str(best, "point_id"));
    fprintf(md, "| link | bandwidth | smallest block hiding the transfer (rows, 2R/W) | its K+V "
                "bytes |\n|---|---|---|---|\n");
    for (size_t l = 0; l < sizeof links / sizeof links[0]; l++) {
        const double c = 2 * R / links[l].bytes_per_s;
        fprintf(md, "| %s | %.2f GB/s | %.0f | %.0f KiB |\n", links[l].name,
                links[l].bytes_per_s / 1e9, c, 8 * c * dh / 1024);
    }
    fprintf(md, "\nPredicted time of one exact forward (non-causal, d = %.0f, one head) and memory "
                "per node (q, k, v, out of c rows plus the two blocks in flight, 32 c d bytes):\n\n"
                "| n | 8 nodes | 32 nodes | 256 nodes |\n|---|---|---|---|\n", dh);
    static const double nodes[] = {8, 32, 256};
    int hidden = 1;
    for (int e = 20; e <= 24; e += 2) {
        const double n = ldexp(1, e);
        fprintf(md, "| 2^%d |", e);
        for (size_t p = 0; p < 3; p++) {
            const double P = nodes[p], c = n / P;
            const double compute = 4 * dh * n * n / (P * R);
            const double link = P * (8 * c * dh / links[0].bytes_per_s + LATENCY_S);
            char t[32];
            fmt_duration(fmax(compute, link), t, sizeof t);
            hidden &= compute >= link;
            fprintf(md, " %s%s, %.2g GiB/node |", t, compute >= link ? "" : " (10 GbE-bound)",
                    32 * c * dh / 1073741824.0);
        }
        fputc('\n', md);
    }
    fprintf(md, "\n%sThe model leaves out the first block's transfer, stragglers and the softmax "
                "merge (O(c d) a step).\n",
            hidden ? "Even over 10 GbE every block of these sizes hides its transfer (c = n / P is "
                     "above 2R/W), so each time is the work split P ways. "
                   : "Where marked, the link and not the compute sets the time. ");
    return 0;
}
