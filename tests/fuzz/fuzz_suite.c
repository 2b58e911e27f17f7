/* fuzz_suite.c: suite files, each line a group of sweep flags (methods, lengths, parameter
 * lists, shapes, limits), parsed into points and their point keys. */
#include <stdlib.h>

#include "../../bench/commands/options.h"
#include "../../bench/commands/sweep.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fuzz_stream(data, size);
    if (!f)
        return 0;
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    FILE *errf = stderr;
    stderr = devnull; /* each rejected line prints its one-line error */
    static options defaults;
    static int ready;
    if (!ready) /* reads /proc and the cgroup tree: once */
        options_default(&defaults), ready = 1;
    sweep *sw = sweep_new();
    if (sw && sweep_add_suite(sw, f, "fuzz.suite", &defaults) == 0)
        for (int i = 0; i < sw->npoints; i++) {
            char key[1024], id[17];
            point_key(&sw->points[i], key, sizeof key);
            point_id(key, id);
            point_model m;
            const char *why;
            point_model_of(&sw->points[i], &m, &why);
        }
    sweep_free(sw);
    stderr = errf;
    fclose(f);
    return 0;
}
