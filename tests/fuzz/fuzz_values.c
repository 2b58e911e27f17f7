/* fuzz_values.c: the command-line value parsers, each on every line of the input: integers,
 * sizes (--mem-limit), counts and ranges (--n, --layers), reals, --param key=value for every
 * method, and check's --metric tolerances. Whatever a parser accepts must be in range. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../bench/commands/options.h"
#include "../../bench/sys/cli.h"
#include "../../report/check.h"
#include "../../report/csv.h"
#include "../../report/records.h"
#include "../../report/series.h"
#include "fuzz.h"

static void one(const char *text)
{
    int64_t i;
    uint64_t u;
    double x;
    if (cli_parse_int(text, -5, 1000, &i) == 0 && (i < -5 || i > 1000))
        abort();
    cli_parse_size(text, &u);
    if (cli_parse_count(text, &u) == 0 && (double)u > 0x1p62)
        abort();
    if (cli_parse_real(text, &x) == 0 && !(x >= 0 && isfinite(x)))
        abort();
    int64_t vals[64];
    int nv = options_parse_range(text, vals, 64, INT64_C(1) << 31);
    for (int k = 0; k < nv; k++)
        if (vals[k] < 1 || vals[k] > (INT64_C(1) << 31))
            abort();
    int count;
    const attn_method *const *all = attn_methods(&count);
    for (int m = 0; m < count; m++) {
        attn_params p;
        attn_params_default(all[m], &p);
        if (attn_params_parse(&p, text) == 0)
            for (int k = 0; k < all[m]->n_params; k++) {
                const attn_param_spec *spec = &all[m]->params[k];
                const double v = p.v[k];
                if (spec->kind != ATTN_PARAM_CHOICE && !(spec->auto_ok && v == ATTN_AUTO) &&
                    !(v >= spec->min && v <= spec->max))
                    abort();
                char buf[64];
                attn_param_format(&p, k, buf, sizeof buf);
            }
    }
    check_parse_metric(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    FILE *errf = stderr;
    stderr = devnull;
    for (char *save, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        one(line);
    if (size < 4096) /* and the whole input as one value, newlines and all */
        one((const char *)memcpy(text, data, size));
    stderr = errf;
    free(text);
    return 0;
}
