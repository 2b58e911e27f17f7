/* csv.h: the report's files for other tools: results.csv (one row per record, fixed columns)
 * and fits.csv / fits.json (one row per series and fitted metric). */
#ifndef REPORT_CSV_H
#define REPORT_CSV_H

#include <jansson.h>

#include "series.h"

/* Writes results.csv: one row per record, every scalar as a fixed column (nested ones as
 * rusage's cpu_s), every counter any record has, empty cells where a value is missing.
 * Returns 0 or -1 with err. */
int report_write_csv(const char *path, json_t *records, char *err, size_t errlen);
/* Writes DIR/fits.csv and DIR/fits.json: the exponent b of metric ~ a n^b per series and
 * metric, its standard error, a, R^2, the points and n range fitted; a metric a series cannot
 * fit has empty cells. Returns 0 or -1. */
int report_write_fits(const char *dir, const report_series *s, int ns, double n_from);

#endif
