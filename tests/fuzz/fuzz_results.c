/* fuzz_results.c: results files as attnbench reads them: the JSON Lines reader (torn lines,
 * foreign files), then what report and check do with the records, whatever types their fields
 * hold: series, the CSV, and the regression gate. The input is split at the first form feed
 * into a baseline and a current file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../bench/record/record.h"
#include "../../report/check.h"
#include "../../report/csv.h"
#include "../../report/records.h"
#include "../../report/series.h"
#include "../../report/tables.h"
#include "fuzz.h"

static json_t *read_records(const uint8_t *data, size_t size)
{
    FILE *f = fuzz_stream(data, size);
    if (!f)
        return json_array();
    record_file rf;
    char err[512];
    json_t *records = NULL;
    if (record_file_read_stream(f, "fuzz.jsonl", &rf, err, sizeof err) == 0)
        records = json_incref(rf.records), record_file_free(&rf);
    fclose(f);
    return records;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *ff = memchr(data, '\f', size);
    const size_t first = ff ? (size_t)(ff - data) : size;
    json_t *base = read_records(data, first);
    json_t *cur = ff ? read_records(ff + 1, size - first - 1) : NULL;
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    if (base) {
        for (int x = 0; x < 2; x++) {
            report_series *s = NULL;
            int ns = report_series_make(base, x ? "layers" : "n", &s);
            report_series_free(s, ns);
        }
        char err[512];
        report_write_csv("/dev/null", base, err, sizeof err);
        /* every table of the report and the docs, whatever the records hold: the current
         * file as the reference of the compare tables, every column of points */
        report_data d;
        report_data_init(&d, json_deep_copy(base), REPORT_FIT_FROM);
        d.reference = cur;
        d.columns = "series,method,varies,params,kind,n,d,heads,batch,causal,threads,ranks,"
                    "layers,inputs,status,time,time_min,time_max,spread,gflops,sgemm_share,"
                    "model_tflop,recompute_tflop,peak_rss,point_rss,heap_peak,model_bytes,"
                    "rss_model,param_bytes,activation,model_activation,rss_before_inputs,loss,"
                    "err_mean,err_max,err_fro,recall,scores_per_token,duplicates,busy,"
                    "other_share,probe_fraction,sent_per_rank,peak_rss_sum,wait_share,commit,date";
        size_t count;
        const report_table *all = report_tables(&count);
        for (size_t t = 0; t < count; t++)
            all[t].write(devnull, &d, err, sizeof err);
        report_data_free(&d);
    }
    if (base && cur) {
        /* the table goes to stdout and the verdicts to stderr: keep both quiet */
        fflush(stdout);
        fflush(stderr);
        FILE *out = stdout, *errf = stderr;
        stdout = devnull;
        stderr = devnull;
        check_compare(base, cur, "base.jsonl", "current.jsonl");
        stdout = out;
        stderr = errf;
    }
    json_decref(base);
    json_decref(cur);
    return 0;
}
