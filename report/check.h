/* check.h: the memory-regression gate (`attnbench check`), for the command and its fuzzers. */
#ifndef REPORT_CHECK_H
#define REPORT_CHECK_H

#include <jansson.h>

/* Parses one --metric "NAME:rtol=5%,atol=1MiB" or "NAME:off" into the gates. Returns 0 or
 * CLI_EUSAGE after one line. */
int check_parse_metric(const char *spec);
/* Compares current records with the baseline's point by point (table on stdout, problems on
 * stderr). Returns the exit status: 0 within tolerance, 1 a regression, 2 incomplete. The file
 * names are for messages. */
int check_compare(json_t *base, json_t *cur, const char *baseline, const char *current);

#endif
