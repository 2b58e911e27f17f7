/* plot.h: draws one plot through gnuplot, driven from C through a pipe.
 *
 * For a plot called NAME in DIR it writes NAME.dat (one data block per series) and NAME.gp
 * (the script, runnable on its own with `cd DIR && gnuplot NAME.gp`, so a user can restyle
 * it), then pipes the same script to gnuplot, which writes NAME.png (pngcairo) and NAME.svg.
 * gnuplot keeps going after an error on a pipe and reports it only in its exit status and on
 * stderr, so both are checked, and a sentinel printed last proves the script ran to its end. */
#ifndef REPORT_PLOT_H
#define REPORT_PLOT_H

#include <stddef.h>

typedef struct plot_series {
    char title[320];
    double *x, *y; /* count points, owned by the caller */
    size_t count;
    int hollow;    /* drawn as open markers without a line: points that were not measured */
    int color;     /* gnuplot line type (colour) 1, 2, ...; 0 picks the next one */
} plot_series;

typedef struct plot_spec {
    const char *name;           /* file stem */
    const char *title, *xlabel, *ylabel;
    int logx;                   /* base-2 logarithmic x axis */
    int logy;                   /* logarithmic y axis of this base (2, 10), or 0 */
    const char *yformat;        /* gnuplot format of the y tick labels, or NULL */
    int xpow2;                  /* x tick labels as 2^k */
    int ybytes;                 /* y is bytes: binary-prefix tick labels (KiB, MiB, GiB) */
    int guides;                 /* draw dashed "∝ n" and "∝ n^2" guide lines */
    const plot_series *series;
    size_t nseries;
} plot_spec;

/* Draws the plot into dir. Returns 0, or -1 with one line in err (gnuplot's own message when
 * it failed). */
int plot_draw(const char *dir, const plot_spec *p, char *err, size_t errlen);

#endif
