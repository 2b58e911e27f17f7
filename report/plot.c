/* plot.c: see plot.h. */
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../bench/sys/cli.h"

static void path_of(char *buf, size_t size, const char *dir, const char *name, const char *ext)
{
    snprintf(buf, size, "%s/%s.%s", dir, name, ext);
}

/* A linear byte axis ticked at round binary units: a power-of-two step giving 4 to 8 ticks
 * (256 MiB, 512 MiB, 768 MiB, 1 GiB, ...), not gnuplot's decimal steps (954 MiB). */
static void write_byte_tics(FILE *f, double ymax)
{
    const double step = exp2(floor(log2(ymax / 4)));
    const double unit = step >= 0x1p30 ? 0x1p30 : step >= 0x1p20 ? 0x1p20 : step >= 0x1p10 ? 0x1p10 : 1;
    const char *name = unit == 0x1p30 ? "GiB" : unit == 0x1p20 ? "MiB" : unit == 0x1p10 ? "KiB" : "B";
    fprintf(f, "set yrange [0:%.17g]\nset ytics (", step * ceil(ymax * 1.05 / step));
    for (int i = 0; i * step <= ymax * 1.05 + step; i++)
        fprintf(f, "%s\"%g %s\" %.17g", i ? ", " : "", i * step / unit, i ? name : "", i * step);
    fprintf(f, ")\n");
}

/* Writes the gnuplot commands that draw the plot (to the .gp file and to the pipe). */
static void write_script(FILE *f, const plot_spec *p)
{
    fprintf(f, "# %s.gp: written by `attnbench report`; run with `gnuplot %s.gp` in this folder\n",
            p->name, p->name);
    fprintf(f, "set title \"%s\" noenhanced\nset xlabel \"%s\" noenhanced\n"
               "set ylabel \"%s\" noenhanced\n", p->title, p->xlabel, p->ylabel);
    fprintf(f, "set key left top box opaque\nset grid\nset rmargin 4\n");
    if (p->logx)
        fprintf(f, "set logscale x 2\n");
    if (p->logy)
        fprintf(f, "set logscale y %d\n", p->logy);
    if (p->yformat)
        fprintf(f, "set format y '%s'\n", p->yformat);
    if (p->xpow2)
        fprintf(f, "set format x '2^{%%L}'\n");
    if (p->ybytes)
        fprintf(f, "set format y '%%.0b %%BB'\n");
    /* the guides start at the top left point, the largest y at the smallest x */
    double x0 = INFINITY, y0 = 0;
    for (size_t s = 0; s < p->nseries; s++)
        for (size_t i = 0; i < p->series[s].count; i++) {
            const double x = p->series[s].x[i], y = p->series[s].y[i];
            if (x < x0 || (x == x0 && y > y0)) {
                x0 = x;
                y0 = y;
            }
        }
    const int guides = p->guides && isfinite(x0) && y0 > 0;
    /* the y range of the data, so the guides do not stretch the axes */
    double ymin = INFINITY, ymax = -INFINITY;
    for (size_t s = 0; s < p->nseries; s++)
        for (size_t i = 0; i < p->series[s].count; i++) {
            ymin = fmin(ymin, p->series[s].y[i]);
            ymax = fmax(ymax, p->series[s].y[i]);
        }
    if (p->logy && isfinite(ymin) && ymin > 0)
        fprintf(f, "set yrange [%.17g:%.17g]\n", ymin / 1.5, ymax * 1.5);
    if (p->ybytes && !p->logy && isfinite(ymax) && ymax > 0)
        write_byte_tics(f, ymax);
    if (guides)
        fprintf(f, "x0 = %.17g; y0 = %.17g\n", x0, y0);
    fprintf(f, "set style line 1 lc rgb '#999999' dt 2 lw 1\nset style line 2 lc rgb '#555555' dt 2 lw 1\n");
    fprintf(f, "do for [term in 'pngcairo svg'] {\n");
    fprintf(f, "  if (term eq 'pngcairo') { set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'; "
               "set output '%s.png' } else { set terminal svg size 1000,650 dynamic enhanced font 'DejaVu Sans,11'; "
               "set output '%s.svg' }\n", p->name, p->name);
    fprintf(f, "  plot ");
    for (size_t s = 0; s < p->nseries; s++)
        fprintf(f, "%s'%s.dat' index %zu using 1:2 with %s lt %d title \"%s\" noenhanced",
                s ? ", \\\n       " : "", p->name, s,
                p->series[s].hollow ? "points pt 6 ps 1.5 lw 2" : "linespoints pt 7 ps 0.8 lw 2",
                p->series[s].color ? p->series[s].color : (int)s + 1, p->series[s].title);
    if (guides)
        fprintf(f, ", \\\n       y0 * (x / x0) ls 1 title '∝ n', y0 * (x / x0)**2 ls 2 title '∝ n^2'");
    fprintf(f, "\n  set output\n}\n");
}

static int write_data(const char *path, const plot_spec *p, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return cli_errf(err, errlen, "%s: %s", path, strerror(errno));
    for (size_t s = 0; s < p->nseries; s++) {
        fprintf(f, "# %s\n", p->series[s].title);
        for (size_t i = 0; i < p->series[s].count; i++)
            fprintf(f, "%.17g\t%.17g\n", p->series[s].x[i], p->series[s].y[i]);
        fprintf(f, "\n\n");
    }
    if (fclose(f) != 0)
        return cli_errf(err, errlen, "%s: write failed", path);
    return 0;
}

/* gnuplot's first complaint in its stderr file: the "line N: ..." message (gnuplot echoes the
 * offending input and a caret above it), else the first line that is not blank; "" if none. */
static void first_complaint(const char *path, char *msg, size_t size)
{
    char line[512], first[512] = "";
    msg[0] = '\0';
    FILE *e = fopen(path, "r");
    if (!e)
        return;
    while (fgets(line, sizeof line, e)) {
        line[strcspn(line, "\n")] = '\0';
        const char *text = line + strspn(line, " \t");
        int at = -1;
        if (sscanf(text, "line %*d:%n", &at) == 0 && at > 0) {
            snprintf(msg, size, "%s", text);
            break;
        }
        if (!first[0] && text[strspn(text, " \t^")] != '\0')
            snprintf(first, sizeof first, "%s", text);
    }
    fclose(e);
    if (!msg[0])
        snprintf(msg, size, "%s", first);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

int plot_draw(const char *dir, const plot_spec *p, char *err, size_t errlen)
{
    char dat[1024], gp[1024], png[1024], svg[1024], done[1024], errf[1024], cmd[4096];
    path_of(dat, sizeof dat, dir, p->name, "dat");
    path_of(gp, sizeof gp, dir, p->name, "gp");
    path_of(png, sizeof png, dir, p->name, "png");
    path_of(svg, sizeof svg, dir, p->name, "svg");
    path_of(done, sizeof done, dir, p->name, "done");
    path_of(errf, sizeof errf, dir, p->name, "err");
    if (strchr(dir, '\''))
        return cli_errf(err, errlen, "output folder names with a single quote are not supported");
    if (write_data(dat, p, err, errlen))
        return -1;
    FILE *g = fopen(gp, "w");
    if (!g)
        return cli_errf(err, errlen, "%s: %s", gp, strerror(errno));
    write_script(g, p);
    if (fclose(g) != 0)
        return cli_errf(err, errlen, "%s: write failed", gp);

    unlink(done);
    unlink(png);
    unlink(svg);
    snprintf(cmd, sizeof cmd, "cd '%s' && exec gnuplot 2>'%s.err'", dir, p->name);
    /* a gnuplot that is missing or exits early closes the pipe: that must come back as an
     * exit status to report, not kill the report with SIGPIPE */
    struct sigaction ignore = {.sa_handler = SIG_IGN}, old;
    sigaction(SIGPIPE, &ignore, &old);
    FILE *pipe = popen(cmd, "w");
    if (!pipe) {
        sigaction(SIGPIPE, &old, NULL);
        return cli_errf(err, errlen, "cannot start gnuplot: %s", strerror(errno));
    }
    write_script(pipe, p);
    fprintf(pipe, "set print '%s.done'\nprint 'ok'\nunset print\n", p->name);
    fflush(pipe);
    int status = pclose(pipe);
    sigaction(SIGPIPE, &old, NULL);
    char msg[512];
    first_complaint(errf, msg, sizeof msg);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) == 127)
        return cli_errf(err, errlen, "gnuplot could not run (is gnuplot-nox installed?)%s%s",
                    msg[0] ? ": " : "", msg);
    if (WEXITSTATUS(status) != 0 || access(done, F_OK) != 0)
        return cli_errf(err, errlen, "gnuplot failed on %s (exit %d): %s", gp, WEXITSTATUS(status),
                    msg[0] ? msg : "no message");
    if (file_size(png) <= 0 || file_size(svg) <= 0)
        return cli_errf(err, errlen, "gnuplot wrote no image for %s: %s", p->name, msg);
    unlink(done);
    if (msg[0]) /* warnings only (an error would have failed above) */
        fprintf(stderr, "attnbench report: gnuplot warning on %s: %s\n", p->name, msg);
    unlink(errf);
    return 0;
}
