/* npy.h: NumPy .npy files (format versions 1.0, 2.0 and 3.0), so NumPy or PyTorch can feed and
 * check any method from outside. Reads little-endian C-order arrays; writes version 1.0. */
#ifndef BENCH_NPY_H
#define BENCH_NPY_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#define NPY_MAX_DIMS 8

typedef struct npy_array {
    char descr[16]; /* NumPy dtype string, e.g. "<f4" */
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    size_t count;   /* elements */
    void *data;     /* count elements, owned; free with npy_free */
} npy_array;

/* Reads `path`, which must hold a C-order array of dtype `descr` (e.g. "<f4", "<i4").
 * Returns 0, or -1 with one line explaining why in err (no newline). */
int npy_read(const char *path, const char *descr, npy_array *a, char *err, size_t errlen);
/* The same from an open stream, named `path` in messages (the fuzzer reads from memory). */
int npy_read_stream(FILE *f, const char *path, const char *descr, npy_array *a, char *err,
                    size_t errlen);
/* Writes an array of `elem`-byte elements with dtype `descr`. Returns 0 or -1 with err. */
int npy_write(const char *path, const char *descr, int ndim, const int64_t *shape,
              const void *data, size_t elem, char *err, size_t errlen);
/* "5, 0": the multi-index of flat element i of an array of a's shape, in buf. */
const char *npy_index(const npy_array *a, int64_t i, char *buf, size_t size);
/* Frees a's data; npy_free on a zeroed array does nothing. */
void npy_free(npy_array *a);

#endif
