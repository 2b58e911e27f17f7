/* docs.c: `attnbench docs [--check] FILE.md...`: the measured tables of the documentation,
 * generated from the committed results.
 *
 * A generated block is delimited by two marker lines that name its source:
 *
 *   <!-- attnbench:table exponents results/default/results.jsonl where=method!=full -->
 *   ...written by the table writer...
 *   <!-- attnbench:end -->
 *
 * The first word is a table (tables.h: the writers report.md uses), then results files and
 * options: where=PATH=VALUE or where=PATH!=VALUE (repeatable, all must hold; PATH is a record
 * field or a dotted path such as params.n_hashes), columns=A,B,... (points), reference=FILE,...
 * (compare-*), largest=1 (peers: one row per pair), fit-from=N. `docs` rewrites every block from its files; `docs --check` rewrites
 * nothing and fails, naming the block, where a file differs from what its sources give, so a
 * number in the docs cannot drift from the data it came from (cog's --check, for these tables).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../bench/commands/commands.h"
#include "../bench/sys/cli.h"
#include "records.h"
#include "tables.h"

#define MARK_BEGIN "<!-- attnbench:table "
#define MARK_END "<!-- attnbench:end -->"
#define MAX_WORDS 64

/* One block's source, parsed from its marker. */
typedef struct block_spec {
    char text[1024];              /* the marker's words, for messages */
    char *words[MAX_WORDS];       /* pointers into a copy of text */
    int nwords;
    const report_table *table;
    char *files[MAX_WORDS], *wheres[MAX_WORDS], *refs[MAX_WORDS];
    int nfiles, nwheres, nrefs;
    const char *columns, *metric;
    int largest;
    double fit_from;
    char copy[1024];
} block_spec;

/* Splits "a,b,c" in place into out[]. */
static int split_list(char *s, char **out, int *n)
{
    for (char *save, *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (*n == MAX_WORDS)
            return -1;
        out[(*n)++] = t;
    }
    return 0;
}

static int parse_spec(const char *words, block_spec *b, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    snprintf(b->text, sizeof b->text, "%s", words);
    for (size_t n = strlen(b->text); n && (b->text[n - 1] == ' ' || b->text[n - 1] == '\t');)
        b->text[--n] = '\0';
    snprintf(b->copy, sizeof b->copy, "%s", words);
    b->fit_from = 16384;
    for (char *save, *t = strtok_r(b->copy, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (b->nwords == MAX_WORDS)
            return cli_errf(err, errlen, "more than %d words", MAX_WORDS);
        b->words[b->nwords++] = t;
    }
    if (b->nwords == 0)
        return cli_errf(err, errlen, "no table named");
    if (!(b->table = report_table_find(b->words[0]))) {
        char names[1024] = "";
        size_t count;
        const report_table *all = report_tables(&count);
        for (size_t i = 0; i < count; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                     all[i].name);
        return cli_errf(err, errlen, "unknown table '%s' (tables: %s)", b->words[0], names);
    }
    for (int i = 1; i < b->nwords; i++) {
        char *w = b->words[i], *eq = strchr(w, '=');
        if (!eq) {
            b->files[b->nfiles++] = w;
            continue;
        }
        *eq = '\0';
        char *value = eq + 1;
        int rc = 0;
        if (strcmp(w, "where") == 0)
            b->wheres[b->nwheres++] = value;
        else if (strcmp(w, "columns") == 0)
            b->columns = value;
        else if (strcmp(w, "reference") == 0)
            rc = split_list(value, b->refs, &b->nrefs);
        else if (strcmp(w, "metric") == 0)
            b->metric = value;
        else if (strcmp(w, "largest") == 0)
            b->largest = strcmp(value, "1") == 0;
        else if (strcmp(w, "fit-from") == 0)
            b->fit_from = atof(value);
        else
            return cli_errf(err, errlen, "unknown option '%s' (options: where, columns, "
                            "reference, metric, largest, fit-from)", w);
        if (rc)
            return cli_errf(err, errlen, "too many files in %s=", w);
    }
    if (b->nfiles == 0)
        return cli_errf(err, errlen, "no results file named");
    return 0;
}

/* Whether rec satisfies "PATH=VALUE" (or "PATH!=VALUE"): a string equal to VALUE, a number
 * equal to it as a number, a flag equal to true/false, a missing or null value to "null". */
static int where_holds(const json_t *rec, const char *cond)
{
    const char *eq = strchr(cond, '=');
    if (!eq)
        return 0;
    const int negate = eq > cond && eq[-1] == '!';
    char path[256];
    snprintf(path, sizeof path, "%.*s", (int)(eq - cond - negate), cond);
    const char *want = eq + 1;
    const json_t *v = report_path(rec, path);
    int match;
    if (!v || json_is_null(v))
        match = strcmp(want, "null") == 0;
    else if (json_is_string(v))
        match = strcmp(json_string_value(v), want) == 0;
    else if (json_is_boolean(v))
        match = strcmp(want, json_is_true(v) ? "true" : "false") == 0;
    else if (json_is_number(v)) {
        char *end;
        const double x = strtod(want, &end);
        match = *want && !*end && x == json_number_value(v);
    } else
        match = 0;
    return negate ? !match : match;
}

/* Writes the block's table into a new string (*text). Returns 0, or -1 with err. */
static int generate(const block_spec *b, char **text, char *err, size_t errlen)
{
    json_t *records = NULL, *reference = NULL;
    *text = NULL;
    if (report_load(b->nfiles, (char **)b->files, &records, err, errlen) ||
        (b->nrefs && report_load(b->nrefs, (char **)b->refs, &reference, err, errlen))) {
        json_decref(records);
        json_decref(reference);
        return -1;
    }
    json_t *kept = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(records, i, r)
    {
        int all = 1;
        for (int w = 0; w < b->nwheres && all; w++)
            all = where_holds(r, b->wheres[w]);
        if (all)
            json_array_append(kept, r);
    }
    json_decref(records);
    report_data d;
    report_data_init(&d, kept, b->fit_from);
    d.reference = reference;
    d.columns = b->columns;
    d.metric = b->metric;
    d.largest_only = b->largest;
    size_t len = 0;
    FILE *mem = open_memstream(text, &len);
    int rc = -1;
    if (!mem) {
        cli_errf(err, errlen, "out of memory");
    } else {
        rc = json_array_size(d.records) == 0
                 ? cli_errf(err, errlen, "the files hold no record the block selects")
                 : b->table->write(mem, &d, err, errlen);
        fclose(mem);
        if (!rc && len == 0)
            rc = cli_errf(err, errlen, "the table has nothing to show for the selected records");
    }
    report_data_free(&d);
    json_decref(reference);
    if (rc) {
        free(*text);
        *text = NULL;
    }
    return rc ? -1 : 0;
}

/* The first line where a and b differ (1-based), and that line of each. */
static int first_difference(const char *a, const char *b, char *la, char *lb, size_t size)
{
    int line = 1;
    while (*a || *b) {
        const size_t na = strcspn(a, "\n"), nb = strcspn(b, "\n");
        if (na != nb || strncmp(a, b, na) != 0) {
            snprintf(la, size, "%.*s", (int)na, a);
            snprintf(lb, size, "%.*s", (int)nb, b);
            return line;
        }
        a += na + (a[na] == '\n');
        b += nb + (b[nb] == '\n');
        line++;
    }
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len + 65536 + 1 > cap) {
            char *grown = realloc(buf, cap = 2 * cap + 65536 + 1);
            if (!grown) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = grown;
        }
        const size_t got = fread(buf + *len, 1, 65536, f);
        *len += got;
        if (got < 65536)
            break;
    }
    const int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    buf[*len] = '\0';
    return buf;
}

/* Writes text over path atomically. Returns 0 or -1 with errno. */
static int write_file(const char *path, const char *text, size_t len)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return -1;
    int bad = fwrite(text, 1, len, f) != len;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

/* Counts of one pass over the files. */
typedef struct docs_tally {
    int blocks, stale, errors;
} docs_tally;

/* Regenerates the blocks of one file into out (the whole new file), checking or not. */
static int docs_file(const char *path, int check, docs_tally *t)
{
    size_t len;
    char *src = read_file(path, &len);
    if (!src)
        return cli_error("docs", "%s: %s", path, strerror(errno));
    char *out = NULL;
    size_t outlen = 0;
    FILE *o = open_memstream(&out, &outlen);
    if (!o) {
        free(src);
        return cli_fail("docs", "out of memory");
    }
    int lineno = 0, stale_here = 0;
    const char *p = src;
    while (*p) {
        const size_t n = strcspn(p, "\n");
        const int has_nl = p[n] == '\n';
        lineno++;
        fwrite(p, 1, n + has_nl, o);
        const char *line = p;
        p += n + has_nl;
        if (strncmp(line, MARK_BEGIN, strlen(MARK_BEGIN)) != 0)
            continue;
        /* the marker: its words up to " -->" */
        char words[1024];
        const int wlen = (int)n - (int)strlen(MARK_BEGIN);
        snprintf(words, sizeof words, "%.*s", wlen > 0 ? wlen : 0, line + strlen(MARK_BEGIN));
        char *close = strstr(words, "-->");
        const int begin_line = lineno;
        t->blocks++;
        /* the old content, up to the end marker */
        const char *body = p;
        int found_end = 0;
        while (*p) {
            const size_t m = strcspn(p, "\n");
            lineno++;
            if (m == strlen(MARK_END) && strncmp(p, MARK_END, m) == 0) {
                found_end = 1;
                break;
            }
            p += m + (p[m] == '\n');
        }
        const char *end_marker = p;
        char err[1024];
        block_spec b;
        char *text = NULL;
        if (!close || !found_end) {
            fprintf(stderr, "attnbench docs: %s:%d: %s\n", path, begin_line,
                    !close ? "the marker does not end with -->" : "no " MARK_END " after the block");
            t->errors++;
            fwrite(body, 1, (size_t)(end_marker - body), o);
            continue;
        }
        *close = '\0';
        if (parse_spec(words, &b, err, sizeof err) || generate(&b, &text, err, sizeof err)) {
            fprintf(stderr, "attnbench docs: %s:%d: block `%s`: %s\n", path, begin_line,
                    b.text[0] ? b.text : words, err);
            t->errors++;
            fwrite(body, 1, (size_t)(end_marker - body), o);
            continue;
        }
        /* the block: an empty line, the table, an empty line (markdown needs them) */
        char *fresh = NULL;
        size_t flen = 0;
        FILE *fb = open_memstream(&fresh, &flen);
        if (fb) {
            fprintf(fb, "\n%s\n", text);
            fclose(fb);
        }
        const size_t old_len = (size_t)(end_marker - body);
        if (fresh && (old_len != flen || memcmp(body, fresh, flen) != 0)) {
            t->stale++;
            stale_here++;
            if (check) {
                char have[512], want[512];
                char *old = strndup(body, old_len);
                const int at = old ? first_difference(old, fresh, have, want, sizeof have) : 0;
                fprintf(stderr, "attnbench docs: %s:%d: block `%s` differs from what its files "
                                "give; first at line %d of the block:\n  in the file: %s\n  "
                                "from the files: %s\n",
                        path, begin_line, b.text, at, have, want);
                free(old);
            }
        }
        fwrite(check || !fresh ? body : fresh, 1, check || !fresh ? old_len : flen, o);
        free(fresh);
        free(text);
    }
    fclose(o);
    int rc = 0;
    if (!check && stale_here && write_file(path, out, outlen) != 0)
        rc = cli_fail("docs", "cannot write %s: %s", path, strerror(errno));
    free(out);
    free(src);
    return rc;
}

/* `attnbench table TABLE FILE.jsonl... [OPTION=VALUE]...`: one generated table on stdout, as a
 * docs block with the same words would hold it. */
int cmd_table(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage: attnbench table TABLE FILE.jsonl... [OPTION=VALUE]...\n"
               "Writes one table to stdout, exactly as a generated block of the docs with the same\n"
               "words holds it (`attnbench docs --help` lists the tables and options).\n");
        return argc < 2 ? CLI_EUSAGE : 0;
    }
    char words[1024] = "";
    for (int i = 1; i < argc; i++) {
        if (strchr(argv[i], ' ') || strlen(words) + strlen(argv[i]) + 2 > sizeof words)
            return cli_error("table", "'%s': a word with a space, or too many words", argv[i]);
        snprintf(words + strlen(words), sizeof words - strlen(words), "%s%s", i > 1 ? " " : "",
                 argv[i]);
    }
    block_spec b;
    char err[1024], *text = NULL;
    if (parse_spec(words, &b, err, sizeof err) || generate(&b, &text, err, sizeof err))
        return cli_error("table", "%s", err);
    fputs(text, stdout);
    free(text);
    return 0;
}

static void docs_usage(void)
{
    printf("usage: attnbench docs [--check] FILE.md...\n"
           "Rewrites every generated block of the files from the results it names:\n\n"
           "  " MARK_BEGIN "TABLE FILE.jsonl... [OPTION=VALUE]... -->\n"
           "  (generated)\n"
           "  " MARK_END "\n\n"
           "--check rewrites nothing and exits 1, naming each block, when a file differs from\n"
           "what its results give (CI runs it as `make docs-check`).\n\n"
           "Options: where=PATH=VALUE or where=PATH!=VALUE (repeatable; PATH a field or a dotted\n"
           "path such as params.n_hashes or machine_load.busy), columns=A,B,... (points),\n"
           "reference=FILE,... (compare-*), metric=NAME (fits: one metric), largest=1 (peers:\n"
           "the largest n of each pair), fit-from=N.\n\n"
           "Tables:\n");
    size_t count;
    const report_table *all = report_tables(&count);
    for (size_t i = 0; i < count; i++)
        printf("  %-16s %s\n", all[i].name, all[i].summary);
    printf("\nColumns of points: ");
    table_points_columns(stdout);
    printf("\n");
}

int cmd_docs(int argc, char **argv)
{
    enum { OPT_CHECK = 1, OPT_HELP };
    static const struct option opts[] = {{"check", no_argument, 0, OPT_CHECK},
                                         {"help", no_argument, 0, OPT_HELP},
                                         {0, 0, 0, 0}};
    int check = 0;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (c) {
        case OPT_CHECK: check = 1; break;
        case OPT_HELP: docs_usage(); return 0;
        default: return cli_getopt_error("docs", optopt, argv, optind);
        }
    }
    if (optind >= argc)
        return cli_error("docs", "no markdown file given");
    docs_tally t = {0};
    for (int f = optind; f < argc; f++) {
        const int rc = docs_file(argv[f], check, &t);
        if (rc)
            return rc;
    }
    if (t.errors > 1) /* one bad block is one line; several get a count after their lines */
        return cli_error("docs", "%d of %d blocks could not be generated (see above)", t.errors,
                         t.blocks);
    if (t.errors)
        return CLI_EUSAGE;
    if (check && t.stale) {
        fprintf(stderr, "attnbench docs: %d of %d blocks differ from their results; `make docs` "
                        "rewrites them\n", t.stale, t.blocks);
        return CLI_EFAIL;
    }
    fprintf(stderr, "attnbench docs: %d blocks in %d files%s%s\n", t.blocks, argc - optind,
            check ? ", every one as its results give it" : "",
            !check && t.stale ? ", rewritten where they differed" : "");
    return 0;
}
