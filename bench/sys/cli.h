/* cli.h: what every attnbench subcommand shares: one-line errors with exit status 2, number
 * parsing, and turning --method / --param flags into validated attn_params. */
#ifndef BENCH_CLI_H
#define BENCH_CLI_H

#include <stdint.h>

#include "../../attn/attn.h"

#define CLI_EUSAGE 2 /* exit status of every user error */
#define CLI_EFAIL 1  /* exit status of a failure that is not the user's (out of memory, a kernel error, a write) */

/* Prints "attnbench <cmd>: <message>" on stderr; returns CLI_EUSAGE. */
int cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same line for a failure that is not a usage error; returns CLI_EFAIL. */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reports a getopt_long failure (unknown flag or missing value); returns CLI_EUSAGE. */
int cli_getopt_error(const char *cmd, int optopt_char, char **argv, int optind_now);

/* Parses a whole decimal integer in [min, max]. Returns 0 or -1. */
int cli_parse_int(const char *text, int64_t min, int64_t max, int64_t *out);
/* Parses a byte size with an optional binary suffix K, M, G or T (e.g. "3G", "512M"). */
int cli_parse_size(const char *text, uint64_t *bytes);
/* Parses a whole count with an optional binary suffix, as sequence lengths are written
 * (64K = 65536, 1M); a fraction of one ("2.5", "1.0001K") is an error, not truncated. */
int cli_parse_count(const char *text, uint64_t *count);
/* Parses a non-negative finite real number. */
int cli_parse_real(const char *text, double *out);
/* Formats a message into err (errlen bytes) and returns -1: the error path of functions that
 * report through a caller's buffer. */
int cli_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* mkdir -p: creates the folder `dir` and its missing parents (0755). Returns 0, or -1 with
 * errno set. */
int cli_mkdirs(const char *dir);
/* The same for the folder holding `file` (nothing when it has no folder part). */
int cli_mkdirs_for(const char *file);

/* Looks up method `name` and fills p with its defaults; on failure prints the known methods
 * and returns CLI_EUSAGE. */
int cli_method(const char *cmd, const char *name, attn_params *p);
/* The error for a missing (name NULL) or unknown method: the registry's methods, and `also`
 * (names a command accepts beyond them) if not NULL. Returns CLI_EUSAGE. */
int cli_method_error(const char *cmd, const char *name, const char *also);
/* Applies "key=value" to p; on failure prints the parameter, the problem and the accepted
 * values, and returns CLI_EUSAGE. */
int cli_param(const char *cmd, attn_params *p, const char *assignment);
/* cli_method, then cli_param for each of the nparams assignments in order. */
int cli_method_params(const char *cmd, const char *name, const char *const *params, int nparams,
                      attn_params *p);
/* Reports an attn_check() failure (code and reason); returns CLI_EUSAGE. */
int cli_check_error(const char *cmd, const attn_params *p, int rc, const char *why);

#endif
