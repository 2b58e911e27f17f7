/* npy.c: reader and writer for NumPy .npy files (see npy.h). The header is a Python dict
 * literal; this parser accepts what numpy.save writes (any key order, either quote style) and
 * rejects everything it cannot map onto a C-order array without conversion. */
#include "npy.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char NPY_MAGIC[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* Finds the value that follows key `name` ('name' or "name", then ':') in the dict literal. */
static const char *dict_value(const char *hdr, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = hdr; (p = strstr(p, name)) != NULL; p++) {
        if (p == hdr || (p[-1] != '\'' && p[-1] != '"') || p[len] != p[-1])
            continue;
        const char *v = p + len + 1;
        while (isspace((unsigned char)*v))
            v++;
        if (*v != ':')
            continue;
        v++;
        while (isspace((unsigned char)*v))
            v++;
        return v;
    }
    return NULL;
}

static int parse_header(const char *hdr, npy_array *a, int *fortran, char *err, size_t errlen)
{
    const char *v = dict_value(hdr, "descr");
    if (!v || (*v != '\'' && *v != '"'))
        return cli_errf(err, errlen, "header has no 'descr'");
    const char *end = strchr(v + 1, *v);
    if (!end || (size_t)(end - v - 1) >= sizeof a->descr)
        return cli_errf(err, errlen, "header has a malformed 'descr'");
    memcpy(a->descr, v + 1, (size_t)(end - v - 1));
    a->descr[end - v - 1] = '\0';

    v = dict_value(hdr, "fortran_order");
    if (!v)
        return cli_errf(err, errlen, "header has no 'fortran_order'");
    if (strncmp(v, "True", 4) == 0)
        *fortran = 1;
    else if (strncmp(v, "False", 5) == 0)
        *fortran = 0;
    else
        return cli_errf(err, errlen, "header has a malformed 'fortran_order'");

    v = dict_value(hdr, "shape");
    if (!v || *v != '(')
        return cli_errf(err, errlen, "header has no 'shape' tuple");
    a->ndim = 0;
    a->count = 1;
    for (v++;;) {
        while (isspace((unsigned char)*v) || *v == ',')
            v++;
        if (*v == ')')
            break;
        if (!isdigit((unsigned char)*v))
            return cli_errf(err, errlen, "header has a malformed 'shape'");
        if (a->ndim == NPY_MAX_DIMS)
            return cli_errf(err, errlen, "array has more than %d dimensions", NPY_MAX_DIMS);
        char *next;
        errno = 0;
        long long dim = strtoll(v, &next, 10);
        if (errno || dim > (1LL << 40))
            return cli_errf(err, errlen, "header has an out-of-range dimension");
        a->shape[a->ndim++] = dim;
        /* the product must not wrap: a shape whose element count overflows would be read as
         * a small array and then indexed as a huge one */
        if (dim > 0 && a->count > (UINT64_C(1) << 40) / (uint64_t)dim)
            return cli_errf(err, errlen, "shape holds more than 2^40 elements");
        a->count *= (size_t)dim;
        v = next;
    }
    return 0;
}

int npy_read(const char *path, const char *descr, npy_array *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    FILE *f = fopen(path, "rb");
    if (!f)
        return cli_errf(err, errlen, "%s: %s", path, strerror(errno));
    int rc = npy_read_stream(f, path, descr, a, err, errlen);
    fclose(f);
    return rc;
}

int npy_read_stream(FILE *f, const char *path, const char *descr, npy_array *a, char *err,
                    size_t errlen)
{
    memset(a, 0, sizeof *a);
    int rc = -1;
    char *hdr = NULL;
    unsigned char pre[12];
    if (fread(pre, 1, 8, f) != 8 || memcmp(pre, NPY_MAGIC, 6) != 0) {
        cli_errf(err, errlen, "%s: not a NumPy .npy file (bad magic)", path);
        goto done;
    }
    size_t hlen;
    if (pre[6] == 1) {
        if (fread(pre + 8, 1, 2, f) != 2)
            goto truncated;
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 8, 1, 4, f) != 4)
            goto truncated;
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 |
               (size_t)pre[11] << 24;
    } else {
        cli_errf(err, errlen, "%s: unsupported .npy format version %d.%d", path, pre[6], pre[7]);
        goto done;
    }
    if (hlen > (1u << 20) || !(hdr = malloc(hlen + 1))) {
        cli_errf(err, errlen, "%s: header of %zu bytes is not plausible", path, hlen);
        goto done;
    }
    if (fread(hdr, 1, hlen, f) != hlen)
        goto truncated;
    hdr[hlen] = '\0';
    char why[128];
    int fortran = 0;
    if (parse_header(hdr, a, &fortran, why, sizeof why)) {
        cli_errf(err, errlen, "%s: %s", path, why);
        goto done;
    }
    if (strcmp(a->descr, descr) != 0) {
        cli_errf(err, errlen, "%s: dtype is '%s', expected '%s'", path, a->descr, descr);
        goto done;
    }
    if (fortran) {
        cli_errf(err, errlen, "%s: Fortran-order array; save a C-order one (numpy.ascontiguousarray)",
             path);
        goto done;
    }
    size_t elem = (size_t)atoi(descr + 2), want = a->count * elem;
    /* a header may promise more than the file holds: compare with what is left before
     * allocating it (a 150-byte file asking for 22 GB is a truncated file, not an OOM) */
    const long here = ftell(f);
    if (here >= 0 && fseek(f, 0, SEEK_END) == 0) {
        const long end = ftell(f);
        if (fseek(f, here, SEEK_SET) != 0 || end < here) {
            cli_errf(err, errlen, "%s: cannot seek", path);
            goto done;
        }
        if ((size_t)(end - here) != want) {
            cli_errf(err, errlen, (size_t)(end - here) < want
                                  ? "%s: truncated: %zu bytes of data, shape needs %zu"
                                  : "%s: %zu bytes of data, longer than the %zu its shape says",
                 path, (size_t)(end - here), want);
            goto done;
        }
    }
    if (!(a->data = malloc(want ? want : 1))) {
        cli_errf(err, errlen, "%s: cannot allocate %zu bytes", path, want);
        goto done;
    }
    size_t got = fread(a->data, 1, want, f);
    if (got != want) {
        cli_errf(err, errlen, "%s: truncated: %zu bytes of data, shape needs %zu", path, got, want);
        goto done;
    }
    if (fgetc(f) != EOF) {
        cli_errf(err, errlen, "%s: data is longer than its shape says", path);
        goto done;
    }
    rc = 0;
    goto done;
truncated:
    cli_errf(err, errlen, "%s: truncated header", path);
done:
    free(hdr);
    if (rc)
        npy_free(a);
    return rc;
}

int npy_write(const char *path, const char *descr, int ndim, const int64_t *shape,
              const void *data, size_t elem, char *err, size_t errlen)
{
    char dict[512];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                       descr);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%lld%s", (long long)shape[i],
                        ndim == 1 || i + 1 < ndim ? ", " : "");
        count *= (size_t)shape[i];
    }
    len += snprintf(dict + len, sizeof dict - (size_t)len, "), }");
    /* pad with spaces so the data starts on a 64-byte boundary; the header ends in '\n' */
    size_t total = 10 + (size_t)len + 1, hlen = (size_t)len + 1 + (64 - total % 64) % 64;
    unsigned char pre[10];
    memcpy(pre, NPY_MAGIC, 6);
    pre[6] = 1;
    pre[7] = 0;
    pre[8] = (unsigned char)(hlen & 0xff);
    pre[9] = (unsigned char)(hlen >> 8);

    FILE *f = fopen(path, "wb");
    if (!f)
        return cli_errf(err, errlen, "%s: %s", path, strerror(errno));
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)len, f) == (size_t)len;
    for (size_t i = (size_t)len; ok && i + 1 < hlen; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF && fwrite(data, elem, count, f) == count;
    if (fclose(f) != 0 || !ok)
        return cli_errf(err, errlen, "%s: write failed: %s", path, strerror(errno));
    return 0;
}

void npy_free(npy_array *a)
{
    free(a->data);
    a->data = NULL;
}

const char *npy_index(const npy_array *a, int64_t i, char *buf, size_t size)
{
    int64_t idx[NPY_MAX_DIMS], rest = i;
    for (int dim = a->ndim - 1; dim >= 0; dim--) {
        idx[dim] = rest % a->shape[dim];
        rest /= a->shape[dim];
    }
    size_t len = 0;
    buf[0] = '\0';
    for (int dim = 0; dim < a->ndim && len < size; dim++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", dim ? ", " : "",
                                (long long)idx[dim]);
    return buf;
}
