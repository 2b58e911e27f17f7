/* cli.c: shared command-line helpers (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

__attribute__((format(printf, 2, 0))) static void print_line(const char *cmd, const char *fmt, va_list ap)
{
    fprintf(stderr, "attnbench %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_line(cmd, fmt, ap);
    va_end(ap);
    return CLI_EUSAGE;
}

int cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_line(cmd, fmt, ap);
    va_end(ap);
    return CLI_EFAIL;
}

int cli_getopt_error(const char *cmd, int optopt_char, char **argv, int optind_now)
{
    const char *arg = argv[optind_now - 1];
    if (optopt_char && strncmp(arg, "--", 2) != 0)
        return cli_error(cmd, "unknown option '-%c' (see 'attnbench %s --help')", optopt_char,
                         cmd);
    return cli_error(cmd, "unknown option or missing value: '%s' (see 'attnbench %s --help')", arg,
                     cmd);
}

int cli_parse_int(const char *text, int64_t min, int64_t max, int64_t *out)
{
    if (!text || !*text)
        return -1;
    char *end;
    errno = 0;
    long long x = strtoll(text, &end, 10);
    if (*end || errno || x < min || x > max)
        return -1;
    *out = x;
    return 0;
}

/* A non-negative number with an optional binary suffix K, M, G or T (and "i", "B"). */
static int parse_scaled(const char *text, double *value)
{
    if (!text || !*text || *text == '-')
        return -1;
    char *end;
    errno = 0;
    double x = strtod(text, &end);
    if (errno || end == text || !isfinite(x) || x < 0)
        return -1;
    double mult = 1;
    switch (*end) {
    case 'K': case 'k': mult = 0x1p10; end++; break;
    case 'M': case 'm': mult = 0x1p20; end++; break;
    case 'G': case 'g': mult = 0x1p30; end++; break;
    case 'T': case 't': mult = 0x1p40; end++; break;
    default: break;
    }
    if (*end == 'i' && mult > 1)
        end++;
    if (*end == 'B')
        end++;
    if (*end || x * mult > 0x1p62)
        return -1;
    *value = x * mult;
    return 0;
}

int cli_parse_size(const char *text, uint64_t *bytes)
{
    double v;
    if (parse_scaled(text, &v))
        return -1;
    *bytes = (uint64_t)v;
    return 0;
}

int cli_parse_count(const char *text, uint64_t *count)
{
    double v;
    if (parse_scaled(text, &v) || v != floor(v))
        return -1;
    *count = (uint64_t)v;
    return 0;
}

int cli_parse_real(const char *text, double *out)
{
    if (!text || !*text)
        return -1;
    char *end;
    errno = 0;
    double x = strtod(text, &end);
    if (*end || errno || !isfinite(x) || x < 0)
        return -1;
    *out = x;
    return 0;
}

int cli_method_error(const char *cmd, const char *name, const char *also)
{
    char list[512] = "";
    int count;
    const attn_method *const *all = attn_methods(&count);
    for (int i = 0; i < count; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                 all[i]->name);
    if (also)
        snprintf(list + strlen(list), sizeof list - strlen(list), ", %s", also);
    if (!name)
        return cli_error(cmd, "--method is required (methods: %s)", list);
    return cli_error(cmd, "unknown method '%s' (methods: %s)", name, list);
}

int cli_method(const char *cmd, const char *name, attn_params *p)
{
    const attn_method *m = name ? attn_find(name) : NULL;
    if (!m)
        return cli_method_error(cmd, name, NULL);
    attn_params_default(m, p);
    return 0;
}

int cli_method_params(const char *cmd, const char *name, const char *const *params, int nparams,
                      attn_params *p)
{
    int rc = cli_method(cmd, name, p);
    for (int i = 0; !rc && i < nparams; i++)
        rc = cli_param(cmd, p, params[i]);
    return rc;
}

int cli_param(const char *cmd, attn_params *p, const char *assignment)
{
    const attn_method *m = p->method;
    int rc = attn_params_parse(p, assignment);
    if (rc == 0)
        return 0;
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return cli_error(cmd, "parameter '%s' is not of the form key=value", assignment);
    int keylen = (int)(eq - assignment);
    int i = -1;
    for (int j = 0; j < m->n_params; j++)
        if ((int)strlen(m->params[j].name) == keylen &&
            strncmp(m->params[j].name, assignment, (size_t)keylen) == 0)
            i = j;
    if (i < 0) {
        char list[256] = "";
        for (int j = 0; j < m->n_params; j++) {
            strncat(list, m->params[j].name, sizeof list - strlen(list) - 1);
            if (j + 1 < m->n_params)
                strncat(list, ", ", sizeof list - strlen(list) - 1);
        }
        return cli_error(cmd, "%s: method %s has no parameter '%.*s' (parameters: %s)",
                         attn_errname(ATTN_EUNKNOWN_PARAM), m->name, keylen, assignment,
                         m->n_params ? list : "none");
    }
    const attn_param_spec *spec = &m->params[i];
    if (spec->kind == ATTN_PARAM_CHOICE) {
        char list[256] = "";
        for (int c = 0; spec->choices[c]; c++) {
            strncat(list, spec->choices[c], sizeof list - strlen(list) - 1);
            if (spec->choices[c + 1])
                strncat(list, ", ", sizeof list - strlen(list) - 1);
        }
        return cli_error(cmd, "%s: %s.%s='%s' is not one of: %s", attn_errname(rc), m->name,
                         spec->name, eq + 1, list);
    }
    /* the range as `attnbench list` writes it: [1..2147483648], never 2.14748e+09 */
    char range[96];
    snprintf(range, sizeof range, spec->kind == ATTN_PARAM_INT ? "[%.0f..%.0f]" : "[%g..%g]",
             spec->min, spec->max);
    return cli_error(cmd, "%s: %s.%s='%s' %s; accepted: %s in %s%s", attn_errname(rc), m->name,
                     spec->name, eq + 1,
                     rc == ATTN_EPARAM_RANGE ? "is out of range" : "is not a number",
                     spec->kind == ATTN_PARAM_INT ? "an integer" : "a number", range,
                     spec->auto_ok ? " or auto" : "");
}

int cli_check_error(const char *cmd, const attn_params *p, int rc, const char *why)
{
    return cli_error(cmd, "%s: %s (method %s%s%s)", attn_errname(rc), attn_strerror(rc),
                     p->method->name, why && *why ? ": " : "", why ? why : "");
}

int cli_mkdirs(const char *dir)
{
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(buf, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

int cli_mkdirs_for(const char *file)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    return cli_mkdirs(dir);
}

int cli_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}
