/* fuzz_npy.c: the .npy reader on arbitrary bytes, for both dtypes attnbench reads; what it
 * accepts must be an array whose data holds exactly its shape's elements. */
#include <stdlib.h>

#include "../../bench/sys/npy.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const descrs[] = {"<f4", "<i4"};
    for (int i = 0; i < 2; i++) {
        FILE *f = fuzz_stream(data, size);
        if (!f)
            return 0;
        npy_array a;
        char err[512];
        if (npy_read_stream(f, "fuzz.npy", descrs[i], &a, err, sizeof err) == 0) {
            size_t count = 1;
            for (int d = 0; d < a.ndim; d++)
                count *= (size_t)a.shape[d];
            if (count != a.count || a.ndim > NPY_MAX_DIMS)
                abort();
            volatile const unsigned char *bytes = a.data;
            for (size_t b = 0; b < a.count * 4; b += 4096) /* every page is really there */
                (void)bytes[b];
            if (a.count)
                (void)bytes[a.count * 4 - 1];
        }
        npy_free(&a);
        fclose(f);
    }
    return 0;
}
