/* table_fits.c: the tables built on fitted power laws: the scaling exponents, the crossovers
 * (from which n an approximate method is cheaper than exact attention), memory against depth,
 * and two runs' exponents side by side. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"
#include "tables.h"

int table_exponents(FILE *md, const report_data *d, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    if (d->ns == 0)
        return 0;
    fprintf(md, "| series | largest n ok | n range fitted | peak RSS b | point RSS b | heap peak b "
                "| time b |\n");
    fprintf(md, "|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < d->ns; k++) {
        const report_series *s = &d->s[k];
        double largest = NAN;
        for (size_t j = 0; j < json_array_size(s->points); j++) {
            const json_t *r = json_array_get(s->points, j);
            if (report_is_ok(r))
                largest = report_num(r, "n");
        }
        fit_result f[4];
        report_fit_note note[4];
        char cell[4][160], range[64] = "n/a", big[32] = "none";
        for (int m = 0; m < 4; m++) {
            f[m] = report_fit(s, &report_fit_metrics[m], d->fit_from, &note[m]);
            table_fmt_fit(f[m], cell[m], sizeof cell[m]);
            /* a fit that does not stand is marked where it is printed, never shown as fine */
            if (f[m].ok && !note[m].reliable)
                snprintf(cell[m] + strlen(cell[m]), sizeof cell[m] - strlen(cell[m]),
                         " **unreliable**: %s", note[m].reason);
            else if (note[m].busy_excluded)
                snprintf(cell[m] + strlen(cell[m]), sizeof cell[m] - strlen(cell[m]),
                         ", %zu busy left out", note[m].busy_excluded);
        }
        if (f[REPORT_FIT_PEAK_RSS].ok)
            snprintf(range, sizeof range, "%.0f..%.0f (%zu points)", f[0].n_min, f[0].n_max, f[0].k);
        if (!isnan(largest))
            snprintf(big, sizeof big, "%.0f", largest);
        fprintf(md, "| %s | %s | %s | %s | %s | %s | %s |\n", s->label, big, range, cell[0],
                cell[1], cell[2], cell[3]);
    }
    return 0;
}

/* ---- crossovers: from which n a sparse method is cheaper than exact attention ------------- */

/* The n from which sparse is cheaper than dense in one metric. From the measured points at
 * the n both series ran: where the ratio sparse/dense last crosses 1, interpolated on log-log
 * axes between the two measured n that bracket it. When it does not cross where both ran,
 * from the two fits: the n where a_s n^b_s = a_d n^b_d, pivoting on the middle of the fitted
 * ranges, with the range the exponents' standard errors allow; said to be extrapolated. */
static void crossover(FILE *md, const report_series *sp, const report_series *dn,
                      const report_fit_metric *m, double n_from)
{
    double *ax, *ay, *bx, *by;
    const size_t na = report_series_xy(sp, "n", m->metric, m->field, &ax, &ay);
    const size_t nb = report_series_xy(dn, "n", m->metric, m->field, &bx, &by);
    char what[160] = "no common points";
    double first_n = NAN, prev_n = NAN, prev_r = NAN, cross = NAN;
    int common = 0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++) {
            if (ax[i] != bx[j])
                continue;
            const double r = log(ay[i] / by[j]); /* < 0: sparse is cheaper here */
            if (common && (prev_r < 0) != (r < 0)) /* crossed between prev_n and this n */
                cross = exp(log(prev_n) + (log(ax[i]) - log(prev_n)) * prev_r / (prev_r - r));
            if (!common)
                first_n = ax[i];
            prev_n = ax[i], prev_r = r, common++;
        }
    if (common && prev_r < 0 && !isfinite(cross)) {
        snprintf(what, sizeof what, "cheaper at every n both ran (%.0f..%.0f)", first_n, prev_n);
    } else if (common && prev_r < 0) {
        snprintf(what, sizeof what, "n ≈ %.0f (2^%.1f), measured", cross, log2(cross));
    } else if (common) {
        const fit_result fs = report_fit(sp, m, n_from, NULL), fd = report_fit(dn, m, n_from, NULL);
        const double slope = fs.b - fd.b;
        const double se = sqrt((isfinite(fs.se_b) ? fs.se_b * fs.se_b : 0) +
                               (isfinite(fd.se_b) ? fd.se_b * fd.se_b : 0));
        if (fs.ok && fd.ok && slope < 0) {
            /* ln(ratio) at the pivot, the middle of both fitted ranges (in log n) */
            const double lc = 0.25 * (log(fs.n_min) + log(fs.n_max) + log(fd.n_min) + log(fd.n_max));
            const double rc = log(fs.a / fd.a) + slope * lc;
            const double n_star = exp(lc - rc / slope);
            if (slope + se < 0)
                snprintf(what, sizeof what, "n ≈ 2^%.1f (2^%.1f..2^%.1f), extrapolated from the fits",
                         log2(n_star), log2(exp(lc - rc / (slope - se))), log2(exp(lc - rc / (slope + se))));
            else
                snprintf(what, sizeof what, "n ≈ 2^%.1f, extrapolated from the fits (the exponents "
                         "differ by less than their standard errors)", log2(n_star));
        } else {
            snprintf(what, sizeof what, "not cheaper where both ran (up to %.0f), and its "
                     "exponent is not smaller", prev_n);
        }
    }
    fprintf(md, " %s |", what);
    free(ax), free(ay), free(bx), free(by);
}

static int is_exact(const report_series *s)
{
    return strcmp(report_mechanism(s), "exact attention") == 0;
}

int table_crossovers(FILE *md, const report_data *d, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    int header = 0;
    for (int i = 0; i < d->ns; i++) {
        if (is_exact(&d->s[i]) || strcmp(report_mechanism(&d->s[i]), "training step") == 0)
            continue;
        for (int j = 0; j < d->ns; j++) {
            if (!is_exact(&d->s[j]) || !report_same_shape(&d->s[i], &d->s[j]))
                continue;
            if (!header)
                fprintf(md, "| method | against | time | peak RSS |\n|---|---|---|---|\n");
            header = 1;
            fprintf(md, "| %s | %s |", d->s[i].label, d->s[j].label);
            crossover(md, &d->s[i], &d->s[j], &report_fit_metrics[REPORT_FIT_TIME], d->fit_from);
            crossover(md, &d->s[i], &d->s[j], &report_fit_metrics[REPORT_FIT_PEAK_RSS], d->fit_from);
            fputc('\n', md);
        }
    }
    return 0;
}

/* ---- depth --------------------------------------------------------------------------------- */

/* One training series over several depths: memory at each L and the fitted bytes per layer. */
static void depth_series(FILE *md, const report_series *s)
{
    const size_t np = json_array_size(s->points);
    size_t m = 0;
    double *x = malloc(np * sizeof *x), *y = malloc(np * sizeof *y), base = NAN;
    if (!x || !y) {
        free(x), free(y);
        return;
    }
    fprintf(md, "### %s (n = %.0f)\n\n| L | status | time (s) | peak RSS | param bytes | "
                "activation memory | vs smallest L |\n|---|---|---|---|---|---|---|\n",
            s->label, report_num(json_array_get(s->points, 0), "n"));
    for (size_t j = 0; j < np; j++) {
        const json_t *r = json_array_get(s->points, j);
        const int ok = report_is_ok(r);
        char rss[32], par[32], act[32];
        report_fmt_bytes(report_num(r, "peak_rss_bytes"), rss, sizeof rss);
        report_fmt_bytes(report_num(r, "param_bytes"), par, sizeof par);
        const double a = report_metric_activation(r, NULL);
        report_fmt_bytes(ok ? a : NAN, act, sizeof act);
        if (ok && isnan(base))
            base = a;
        fprintf(md, "| %.0f | %s | %.4g | %s | %s | %s | %s%.1f%% |\n", report_num(r, "layers"),
                report_str(r, "status"), report_num(r, "wall_s"), rss, par, act,
                ok && a >= base ? "+" : "", ok ? 100 * (a - base) / base : NAN);
        if (ok) {
            x[m] = report_num(r, "layers");
            y[m++] = a;
        }
    }
    const fit_result f = fit_linear(x, y, m);
    char slope[32], se[32];
    report_fmt_bytes(f.b, slope, sizeof slope);
    report_fmt_bytes(f.se_b, se, sizeof se);
    if (f.ok)
        fprintf(md, "\nFitted: %s per layer%s%s (R² %.3f) over L = %.0f..%.0f.\n\n", slope,
                isnan(f.se_b) ? "" : " ± ", isnan(f.se_b) ? "" : se, f.r2, f.n_min, f.n_max);
    free(x);
    free(y);
}

int table_depth(FILE *md, const report_data *d, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    report_series *s;
    const int ns = report_series_make(d->records, "layers", &s);
    for (int k = 0; k < ns; k++)
        if (json_array_size(s[k].points) >= 2)
            depth_series(md, &s[k]);
    report_series_free(s, ns);
    return 0;
}

/* ---- two runs' exponents ------------------------------------------------------------------- */

static void fmt_b(fit_result f, char *buf, size_t size)
{
    if (!f.ok)
        snprintf(buf, size, "n/a");
    else if (isnan(f.se_b))
        snprintf(buf, size, "%.2f", f.b);
    else
        snprintf(buf, size, "%.2f ± %.2f", f.b, f.se_b);
}

int table_compare_fits(FILE *md, const report_data *d, char *err, size_t errlen)
{
    if (!d->reference) {
        snprintf(err, errlen, "compare-fits needs reference=FILE");
        return -1;
    }
    report_series *rs;
    const int nr = report_series_make(d->reference, "n", &rs);
    int header = 0;
    for (int k = 0; k < d->ns; k++) {
        const report_series *other = NULL;
        for (int j = 0; j < nr && !other; j++)
            if (strcmp(rs[j].key, d->s[k].key) == 0)
                other = &rs[j];
        if (!other)
            continue;
        for (size_t m = 0; m < report_fit_metric_count; m++) {
            report_fit_note na, nb;
            const fit_result a = report_fit(&d->s[k], &report_fit_metrics[m], d->fit_from, &na);
            const fit_result b = report_fit(other, &report_fit_metrics[m], d->fit_from, &nb);
            if (!a.ok || !b.ok)
                continue; /* a run too short to fit has nothing to set beside the other */
            if (!header)
                fprintf(md, "| series | exponent of | this run | reference | difference | "
                            "within the standard errors |\n|---|---|---|---|---|---|\n");
            header = 1;
            char ca[64], cb[64], diff[32] = "", within[48] = "";
            fmt_b(a, ca, sizeof ca);
            fmt_b(b, cb, sizeof cb);
            if (!na.reliable)
                snprintf(ca + strlen(ca), sizeof ca - strlen(ca), " (unreliable)");
            if (!nb.reliable)
                snprintf(cb + strlen(cb), sizeof cb - strlen(cb), " (unreliable)");
            {
                const double delta = a.b - b.b;
                const double se = sqrt((isfinite(a.se_b) ? a.se_b * a.se_b : 0) +
                                       (isfinite(b.se_b) ? b.se_b * b.se_b : 0));
                snprintf(diff, sizeof diff, "%+.2f", delta);
                if (isfinite(a.se_b) && isfinite(b.se_b))
                    snprintf(within, sizeof within, "%s (combined %.2f)",
                             fabs(delta) <= se ? "yes" : "**no**", se);
                if (!na.reliable || !nb.reliable)
                    snprintf(within, sizeof within, "not compared: unreliable");
            }
            fprintf(md, "| %s | %s | %s | %s | %s | %s |\n", d->s[k].label,
                    report_fit_metrics[m].name, ca, cb, diff, within);
        }
    }
    report_series_free(rs, nr);
    return 0;
}

/* Every fit of each series (or only metric d->metric): b by least squares and by Theil-Sen, the
 * points it stands on, the busy points it left out, and whether it is reliable and why not. */
int table_fits(FILE *md, const report_data *d, char *err, size_t errlen)
{
    int header = 0, known = !d->metric;
    for (size_t m = 0; m < report_fit_metric_count; m++)
        known |= d->metric && strcmp(d->metric, report_fit_metrics[m].name) == 0;
    if (!known) {
        snprintf(err, errlen, "unknown metric '%s' (metrics: peak_rss, point_rss, heap_peak, time)",
                 d->metric);
        return -1;
    }
    for (int k = 0; k < d->ns; k++)
        for (size_t m = 0; m < report_fit_metric_count; m++) {
            if (d->metric && strcmp(d->metric, report_fit_metrics[m].name) != 0)
                continue;
            report_fit_note note;
            const fit_result f = report_fit(&d->s[k], &report_fit_metrics[m], d->fit_from, &note);
            if (!header)
                fprintf(md, "| series | exponent of | b (least squares) | b (Theil-Sen) | points | "
                            "busy left out | reliable |\n|---|---|---|---|---|---|---|\n");
            header = 1;
            char b[64], ts[32] = "", pts[48] = "";
            fmt_b(f, b, sizeof b);
            if (isfinite(note.b_theil_sen))
                snprintf(ts, sizeof ts, "%.2f", note.b_theil_sen);
            if (f.ok)
                snprintf(pts, sizeof pts, "%zu (%.0f..%.0f)", f.k, f.n_min, f.n_max);
            fprintf(md, "| %s | %s | %s | %s | %s | %zu | %s%s |\n", d->s[k].label,
                    report_fit_metrics[m].name, b, ts, pts, note.busy_excluded,
                    note.reliable ? "yes" : "**no**: ", note.reliable ? "" : note.reason);
        }
    return 0;
}
