/* probe_sde.c: the attention library's work counters (attn_stats, counted by the kernels as
 * they run) registered with PAPI as software-defined events of the library "attn", so any
 * PAPI reader sees them as sde:::attn::SCORES and so on, and they count on every machine:
 * no performance-monitoring unit is involved (see probe.h).
 *
 * The source opens only when the point's counters name an sde:::attn:: event (the default
 * list does); otherwise the kernels count nothing. It writes the record's `work`: every counter
 * per repetition from its own readings around the repetitions (so the numbers exist even where
 * PAPI itself failed), the scores the method's model charges beside the scores counted, and
 * the duplicate candidates a method's structure implies (LSH), computed after the timed runs. */
#include <sde_lib.h>
#include <stdio.h>
#include <string.h>

#include "../point/workload.h"
#include "probe.h"

#define SDE_LIBRARY "attn"

void probe_sde_event_name(int i, char *buf, size_t size)
{
    snprintf(buf, size, "sde:::" SDE_LIBRARY "::%s", attn_stat_name(i));
}

int probe_sde_register(attn_stats *stats)
{
    papi_handle_t h = papi_sde_init(SDE_LIBRARY);
    if (!h)
        return -1;
    for (int i = 0; i < ATTN_NSTATS; i++) {
        /* uint64_t and long long have one size and representation here */
        if (papi_sde_register_counter(h, attn_stat_name(i), PAPI_SDE_RO | PAPI_SDE_DELTA,
                                      PAPI_SDE_long_long, &stats->v[i]) != SDE_OK)
            return -1;
        papi_sde_describe_counter(h, attn_stat_name(i), attn_stat_help(i));
    }
    return 0;
}

typedef struct sde_state {
    bool registered;
    attn_stats counts, before, after;
} sde_state;

static void sde_open(void *state, probe_point *pt)
{
    sde_state *st = state;
    const char *events = pt->counters;
    if (pt->pid || !events || !strstr(events, "sde:::" SDE_LIBRARY "::"))
        return; /* nobody asked, or another program runs: the kernels count nothing */
    st->registered = probe_sde_register(&st->counts) == 0;
    pt->work = &st->counts; /* counted either way; PAPI reads them only if registered */
    if (!st->registered)
        json_object_set_new(pt->unavailable, "sde",
                            json_string("papi_sde_init or papi_sde_register_counter failed: "
                                        "the sde:::attn:: events cannot be read through PAPI"));
}

static void sde_start(void *state, probe_point *pt)
{
    sde_state *st = state;
    if (pt->work)
        st->before = st->counts;
}

static void sde_stop(void *state, probe_point *pt)
{
    sde_state *st = state;
    if (pt->work)
        st->after = st->counts;
}

static void sde_report(void *state, probe_point *pt, int reps)
{
    sde_state *st = state;
    if (!pt->work) {
        json_object_set_new(pt->unavailable, "work",
                            json_string(pt->pid ? "an external program: the sde:::attn:: "
                                                  "counters count attnbench's own kernels"
                                                : "no sde:::attn:: event among --counters: the "
                                                  "kernels counted nothing"));
        return;
    }
    json_t *work = json_object(), *counted = json_object();
    for (int i = 0; i < ATTN_NSTATS; i++)
        json_object_set_new(counted, attn_stat_name(i),
                            json_real((double)(st->after.v[i] - st->before.v[i]) / reps));
    json_object_set_new(work, "counted", counted);

    /* the model's scores, for one attention forward (a training step's are not modelled) */
    const double scores = (double)(st->after.v[ATTN_STAT_SCORES] - st->before.v[ATTN_STAT_SCORES]) / reps;
    const double masked = (double)(st->after.v[ATTN_STAT_SCORES_MASKED] -
                                   st->before.v[ATTN_STAT_SCORES_MASKED]) / reps;
    if (pt->model_scores > 0) {
        json_object_set_new(work, "model_scores", json_real(pt->model_scores));
        json_object_set_new(work, "scores_vs_model", json_real(scores / pt->model_scores));
        json_object_set_new(work, "unmasked_vs_model",
                            json_real((scores - masked) / pt->model_scores));
    } else {
        json_object_set_new(work, "model_scores", json_null());
        json_object_set_new(work, "scores_vs_model", json_null());
        json_object_set_new(work, "unmasked_vs_model", json_null());
    }
    json_object_set_new(work, "scores_per_token", json_real(scores / pt->tokens));

    /* what the structure implies (LSH's duplicate candidates), outside the timed runs */
    const workload *w = pt->workload;
    const point_spec *s = w ? w->spec : NULL;
    const attn_method *am = s ? s->params.method : NULL;
    uint64_t dup = 0;
    if (s && !s->train && am->duplicates && w->structure &&
        am->duplicates(&s->shape, &s->params, w->structure, &dup, s->threads) == 0) {
        json_object_set_new(work, "duplicates", json_integer((json_int_t)dup));
        json_object_set_new(work, "duplicates_share", json_real(scores > 0 ? (double)dup / scores : 0));
    } else {
        json_object_set_new(work, "duplicates", json_null());
        json_object_set_new(work, "duplicates_share", json_null());
    }
    json_object_set_new(pt->record, "work", work);
}

static void sde_close(void *state)
{
    sde_state *st = state;
    if (st->registered) /* before the counters' memory goes */
        papi_sde_shutdown(papi_sde_init(SDE_LIBRARY));
}

const probe_source probe_source_sde = {
    .name = "sde",
    .state_bytes = sizeof(sde_state),
    .open = sde_open,
    .start = sde_start,
    .stop = sde_stop,
    .report = sde_report,
    .close = sde_close,
};
