/* record.h: results records: printing one (table or JSON), and reading and appending JSON
 * Lines results files (one record per line, appended and flushed as each point ends). */
#ifndef BENCH_RECORD_H
#define BENCH_RECORD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "../../attn/attn.h"

/* The format of a record: every record names it; it changes only when the format does. */
#define RECORD_SCHEMA "attnbench/1"
/* The release. */
#define ATTNBENCH_VERSION "0.9.0"

/* A series is every point that differs only in one field of its key (n for a scaling series,
 * layers for a depth series, threads for a baseline made on another core count): the key
 * without that field's token ("n", "layers", "threads"). The one definition the sweep (its
 * time predictions and failure rules), the shards, the report and the check share. */
void record_series_key(const char *key, const char *field, char *buf, size_t size);

/* A method's parameters as records hold them: integers and reals as numbers, choices and
 * "auto" as words. */
json_t *record_params(const attn_params *p);

/* One compact JSON object and a newline. */
void record_print_json(FILE *f, const json_t *rec);
/* A readable multi-line table of one record. */
void record_print_table(FILE *f, const json_t *rec);

/* Formats a byte count with a binary unit ("31.2 MiB"). */
const char *record_bytes(double bytes, char *buf, size_t size);

typedef struct record_file {
    json_t *records;     /* array of the file's records, in file order */
    long torn_line;      /* 1-based line of a torn last record that was dropped, or 0 */
    long torn_bytes;
    long good_bytes;     /* bytes of the file up to the end of the last good line */
} record_file;

/* Reads a results file. Every line must be an attnbench record (schema attnbench/...);
 * a last line that is incomplete (no newline, or not valid JSON) is a torn write: it is
 * reported in torn_line/torn_bytes and left out. A missing file reads as empty when
 * missing_ok. Returns 0, or -1 with one line in err (file not ours, corrupt middle line). */
int record_file_read(const char *path, bool missing_ok, record_file *rf, char *err,
                     size_t errlen);
/* The same from an open stream, named `path` in messages (the fuzzer reads from memory). */
int record_file_read_stream(FILE *f, const char *path, record_file *rf, char *err,
                            size_t errlen);
void record_file_free(record_file *rf);
/* An index of records by point_id: an object id -> the last record of that id (borrowed from
 * the array, which must outlive it). A hash table: lookups do not scan the records. */
json_t *record_index(json_t *records);

/* Appends one record as a line and fsyncs it, so a killed sweep loses at most the point in
 * flight. A write that stops short (a full disk: ENOSPC, EDQUOT, EFBIG, EIO) is cut back at
 * once to the end of the last whole record, so the file never keeps a torn line. Returns 0,
 * or -1 with errno set to the cause. */
int record_append(int fd, const json_t *rec);

/* The one writer of a results file: an exclusive flock held from open to close, and a note of
 * who holds it (pid, host, start) in PATH.writer, for the message another writer gets. */
typedef struct record_writer {
    int fd;
    char path[1024];
} record_writer;

/* Opens path for appending (creating it), and takes the lock. Returns 0; or -1 with one line in
 * err: "being written by pid P on H since T" when another process holds it (nothing is then
 * written), or the open's own error. */
int record_writer_open(record_writer *w, const char *path, char *err, size_t errlen);
void record_writer_close(record_writer *w);

/* For readers: whether another process is writing path now, and who ("pid P on H since T"),
 * so a report or check on a file in progress says so. Returns 1 when it is being written. */
int record_file_busy(const char *path, char *who, size_t size);

#endif
