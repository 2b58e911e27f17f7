/* fuzz.h: what the fuzz targets share. Each target defines LLVMFuzzerTestOneInput; clang's
 * libFuzzer drives it under `make fuzz`, and replay.c (built by gcc in `make test` and
 * `make asan`) runs it over its corpus in tests/fuzz/corpus/NAME/, seeds and every crash
 * the fuzzer ever found, so each stays a regression test. */
#ifndef TESTS_FUZZ_H
#define TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a read-only stream (fmemopen), or NULL for an empty one. */
static inline FILE *fuzz_stream(const uint8_t *data, size_t size)
{
    return size ? fmemopen((void *)data, size, "r") : NULL;
}

#endif
