/* test_reconcile — the reconciler's decisions, without services: the window a pass
 * examines (first run, overlap, grace, where paging stops), which listed calls are
 * candidates (terminal parents inside the window, on the configured numbers), and the
 * event built from a Call resource. The pass itself (Twilio paging, the ledger look-up,
 * the lease) runs against the real Redis and Postgres in tests/e2e/test_reconcile.py. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/event.h"
#include "worker/reconcile.h"

#define MIN 60000LL
#define HOUR (60 * MIN)

static worker_settings s;

/* Settings at their documented defaults. */
static void setup(void)
{
    memset(&s, 0, sizeof s);
    s.reconcile_interval_ms = 2 * MIN;
    s.reconcile_grace_ms = MIN;
    s.reconcile_lookback_ms = 24 * HOUR;
    s.reconcile_overlap_ms = 10 * MIN;
    s.reconcile_max_call_ms = 4 * HOUR;
}

TestSuite(reconcile, .init = setup);

/* A completed parent call that ended at `ended_s` (epoch seconds). */
static twilio_call_summary call_ended(long long ended_s)
{
    twilio_call_summary c = {0};
    c.sid = "CA00000000000000000000000000000001";
    c.status = "completed";
    c.from = "+5511971730783";
    c.to = "+551130001000";
    c.started = (time_t)(ended_s - 30);
    c.ended = (time_t)ended_s;
    return c;
}

Test(reconcile, first_window_looks_back_and_leaves_the_grace_period)
{
    long long now = 1800000000000LL;
    reconcile_window w = reconcile_window_for(&s, now, 0);
    cr_expect_eq(w.lower_ms, now - 24 * HOUR);
    cr_expect_eq(w.upper_ms, now - MIN);
    cr_expect_eq(w.stop_before_ms, w.lower_ms - 4 * HOUR);
}

Test(reconcile, later_windows_start_at_the_checkpoint_minus_the_overlap)
{
    long long now = 1800000000000LL, ck = now - 3 * MIN;
    reconcile_window w = reconcile_window_for(&s, now, ck);
    cr_expect_eq(w.lower_ms, ck - 10 * MIN);
    cr_expect_eq(w.upper_ms, now - MIN);
}

Test(reconcile, terminal_parent_inside_the_window_is_a_candidate)
{
    long long now = 1800000000000LL;
    reconcile_window w = reconcile_window_for(&s, now, now - 5 * MIN);
    static const char *const statuses[] = {"completed", "busy", "no-answer", "failed", "canceled"};
    for (size_t i = 0; i < 5; i++) {
        twilio_call_summary c = call_ended(now / 1000 - 120);
        c.status = statuses[i];
        cr_expect_eq(reconcile_classify(&s, &w, &c), RECONCILE_CANDIDATE, "%s", statuses[i]);
    }
}

Test(reconcile, child_legs_unfinished_and_unusable_calls_are_not)
{
    long long now = 1800000000000LL;
    reconcile_window w = reconcile_window_for(&s, now, now - 5 * MIN);
    twilio_call_summary c = call_ended(now / 1000 - 120);
    c.parent_call_sid = "CA00000000000000000000000000000009";
    cr_expect_eq(reconcile_classify(&s, &w, &c), RECONCILE_CHILD_LEG);
    c = call_ended(now / 1000 - 120);
    c.status = "in-progress";
    cr_expect_eq(reconcile_classify(&s, &w, &c), RECONCILE_NOT_TERMINAL);
    c = call_ended(0);
    c.ended = 0;
    cr_expect_eq(reconcile_classify(&s, &w, &c), RECONCILE_NOT_TERMINAL, "no end_time");
    c = call_ended(now / 1000 - 120);
    c.sid = NULL;
    cr_expect_eq(reconcile_classify(&s, &w, &c), RECONCILE_UNUSABLE);
}

Test(reconcile, window_edges_lower_exclusive_upper_inclusive)
{
    long long now = 1800000000000LL;
    reconcile_window w = reconcile_window_for(&s, now, now - 5 * MIN);
    twilio_call_summary in_grace = call_ended((w.upper_ms + 1000) / 1000);
    cr_expect_eq(reconcile_classify(&s, &w, &in_grace), RECONCILE_OUTSIDE, "left for the webhook");
    twilio_call_summary at_upper = call_ended(w.upper_ms / 1000);
    cr_expect_eq(reconcile_classify(&s, &w, &at_upper), RECONCILE_CANDIDATE);
    twilio_call_summary at_lower = call_ended(w.lower_ms / 1000);
    cr_expect_eq(reconcile_classify(&s, &w, &at_lower), RECONCILE_OUTSIDE);
    twilio_call_summary after_lower = call_ended(w.lower_ms / 1000 + 1);
    cr_expect_eq(reconcile_classify(&s, &w, &after_lower), RECONCILE_CANDIDATE);
}

Test(reconcile, numbers_restrict_to_calls_to_or_from_them)
{
    long long now = 1800000000000LL;
    reconcile_window w = reconcile_window_for(&s, now, now - 5 * MIN);
    snprintf(s.reconcile_numbers[0], sizeof s.reconcile_numbers[0], "+551130001000");
    s.reconcile_numbers_len = 1;
    twilio_call_summary in = call_ended(now / 1000 - 120);
    cr_expect_eq(reconcile_classify(&s, &w, &in), RECONCILE_CANDIDATE, "to our line");
    twilio_call_summary out = in;
    out.from = "+551130001000";
    out.to = "+5511971730783";
    cr_expect_eq(reconcile_classify(&s, &w, &out), RECONCILE_CANDIDATE, "from our line");
    twilio_call_summary other = in;
    other.to = "+551130009999";
    cr_expect_eq(reconcile_classify(&s, &w, &other), RECONCILE_OTHER_NUMBER);
}

Test(reconcile, event_from_a_call_resource_reads_like_a_webhook_event)
{
    twilio_call_summary c = call_ended(1800000000);
    c.account_sid = "AC00000000000000000000000000000001";
    c.direction = "inbound";
    c.duration = "42";
    c.end_time = "Fri, 15 Jan 2027 08:00:00 +0000";
    c.caller_name = "Jos\xe9"; /* Latin-1: repaired, not refused */
    char *text = reconcile_event(&c, "2027-01-15T08:00:01.234Z", "reconcile-1");
    cr_assert_not_null(text);
    calllog_error err;
    json_t *back = event_parse(text, strlen(text), &err);
    cr_assert_not_null(back, "%s: %s", err, text);
    cr_expect_str_eq(event_get(back, "call_sid"), c.sid);
    cr_expect_str_eq(event_get(back, "status"), "completed");
    cr_expect_str_eq(event_get(back, "from"), "+5511971730783");
    cr_expect_str_eq(event_get(back, "direction"), "inbound");
    cr_expect_str_eq(event_get(back, "duration"), "42");
    cr_expect_str_eq(event_get(back, "timestamp"), c.end_time);
    cr_expect_str_eq(event_get(back, "source"), "reconcile");
    cr_expect_str_eq(event_get(back, "request_id"), "reconcile-1");
    cr_expect_str_eq(event_get(back, "received_at"), "2027-01-15T08:00:01.234Z");
    cr_expect_str_eq(event_get(back, "caller_name"), "Jos\xef\xbf\xbd");
    cr_expect_null(event_get(back, "parent_call_sid"));
    json_decref(back);
    free(text);
}
