/* test_note_template — unit tests for worker/note_template: the default pt-BR note, every
 * placeholder, brace escapes, dropped empty lines, compile-time errors, the CallSid
 * marker (always present, never forgeable, found again by note_has_marker), duration
 * formats, value cleaning, and local times in America/Sao_Paulo (UTC-3 since 2019, with
 * summer time before), with the zone set by timing_set_zone as the worker sets it at
 * start-up, and recording links (calllog's signed link instead of Twilio's media URL,
 * expiring relative to the call's end, absent without a recording). Criterion runs each test in its
 * own process, so setting TZ here touches nothing else. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timing.h"
#include "worker/note_template.h"

#define SID "CA0123456789abcdef0123456789abcdef"
#define MARKER "[calllog:" SID "]"

/* 2024-03-10 15:04:00 UTC = 12:04 in São Paulo; 5 min 30 s later. */
#define T_START 1710083040
#define T_END 1710083370

/* Sets the zone used by every test of this file. */
static void setup_tz(void)
{
    calllog_error err = {0};

    cr_assert_eq(timing_set_zone("America/Sao_Paulo", &err), CALLLOG_OK, "%s", err.message);
}

/* A completed inbound call with every fact known. */
static call_facts full_facts(void)
{
    call_facts f = {0};

    f.call_sid = SID;
    f.direction = "inbound";
    f.status = "completed";
    f.from = "+5511971730783";
    f.to = "+551133334444";
    f.recording_url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1";
    f.price = "-0.01300";
    f.price_unit = "USD";
    f.answered_by = "human";
    f.caller_name = "MARIA SILVA";
    f.duration_seconds = 330;
    f.start = T_START;
    f.end = T_END;
    return f;
}

/* Compiles `tpl` (must succeed), renders `f` and returns the text (caller frees). */
static char *render(const char *tpl, const call_facts *f)
{
    calllog_error err = {0};
    note_template *t = note_template_compile(tpl, &err);
    char *out = NULL;

    cr_assert_not_null(t, "compile failed: %s", err.message);
    cr_assert_eq(note_render(t, f, &out), CALLLOG_OK);
    cr_assert_not_null(out);
    note_template_free(t);
    return out;
}

/* Asserts that compiling `tpl` fails with an error containing `needle`. */
static void expect_compile_error(const char *tpl, const char *needle)
{
    calllog_error err = {0};
    note_template *t = note_template_compile(tpl, &err);

    cr_expect_null(t, "template %s compiled", tpl);
    note_template_free(t);
    cr_expect_not_null(strstr(err.message, needle), "error '%s' lacks '%s'", err, needle);
}

/* Asserts that rendering `tpl` for `f` gives exactly `want`. */
static void expect_render(const char *tpl, const call_facts *f, const char *want)
{
    char *out = render(tpl, f);

    cr_expect_str_eq(out, want);
    free(out);
}

TestSuite(note, .init = setup_tz);

Test(note, default_template_full)
{
    call_facts f = full_facts();

    expect_render(
        NULL, &f,
        "Ligação recebida — atendida\n"
        "De: +5511971730783\n"
        "Para: +551133334444\n"
        "Duração: 05:30\n"
        "Início: 10/03/2024 12:04\n"
        "Gravação: https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1\n" MARKER);
}

Test(note, default_template_drops_unknown_lines)
{
    call_facts f = {0};

    f.call_sid = SID;
    f.direction = "outbound-api";
    f.status = "no-answer";
    f.from = "+551133334444";
    f.to = "+5511971730783";
    f.duration_seconds = 0;
    expect_render(NULL, &f,
                  "Ligação realizada — não atendida\n"
                  "De: +551133334444\n"
                  "Para: +5511971730783\n"
                  "Duração: 00:00\n" MARKER);
}

Test(note, every_placeholder)
{
    call_facts f = full_facts();
    const char *tpl = "{direction}|{direction_label}|{status}|{status_label}\n"
                      "{from}|{to}|{customer}\n"
                      "{duration}|{duration_seconds}|{start}|{end}\n"
                      "{recording_url}|{price}|{answered_by}|{caller_name}\n"
                      "{call_sid}|{marker}";

    expect_render(tpl, &f,
                  "inbound|Ligação recebida|completed|atendida\n"
                  "+5511971730783|+551133334444|+5511971730783\n"
                  "05:30|330|10/03/2024 12:04|10/03/2024 12:09\n"
                  "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1|-0.01300 USD|"
                  "human|MARIA SILVA\n" SID "|" MARKER);
}

Test(note, status_labels)
{
    static const char *const map[][2] = {{"completed", "atendida"},     {"busy", "ocupado"},
                                         {"no-answer", "não atendida"}, {"failed", "falhou"},
                                         {"canceled", "cancelada"},     {"weird", "weird"}};
    call_facts f = full_facts();

    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        char want[128];
        f.status = map[i][0];
        snprintf(want, sizeof want, "%s\n" MARKER, map[i][1]);
        expect_render("{status_label}", &f, want);
    }
}

Test(note, direction_labels_and_customer)
{
    call_facts f = full_facts();

    f.direction = "outbound-dial";
    expect_render("{direction_label} {customer}", &f, "Ligação realizada +551133334444\n" MARKER);
    f.direction = "inbound";
    expect_render("{direction_label} {customer}", &f, "Ligação recebida +5511971730783\n" MARKER);
    f.customer = "+5521999998888";
    expect_render("{customer}", &f, "+5521999998888\n" MARKER);
}

Test(note, price_without_unit)
{
    call_facts f = full_facts();

    f.price_unit = NULL;
    expect_render("{price}", &f, "-0.01300\n" MARKER);
    f.price = NULL;
    f.price_unit = "USD";
    expect_render("a\nPreço: {price}\nb", &f, "a\nb\n" MARKER);
}

Test(note, durations)
{
    static const struct {
        long secs;
        const char *want;
    } cases[] = {{0, "00:00"},      {7, "00:07"},      {59, "00:59"},
                 {60, "01:00"},     {61, "01:01"},     {3599, "59:59"},
                 {3600, "1:00:00"}, {3725, "1:02:05"}, {36061, "10:01:01"}};
    call_facts f = full_facts();

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char want[64];
        f.duration_seconds = cases[i].secs;
        snprintf(want, sizeof want, "%s %ld\n" MARKER, cases[i].want, cases[i].secs);
        expect_render("{duration} {duration_seconds}", &f, want);
    }
    f.duration_seconds = -1;
    expect_render("x\nDuração: {duration} ({duration_seconds} s)\ny", &f, "x\ny\n" MARKER);
}

Test(note, escapes)
{
    call_facts f = full_facts();

    expect_render("{{status}} = {status}, }}{{", &f, "{status} = completed, }{\n" MARKER);
    expect_render("{{{status}}}", &f, "{completed}\n" MARKER);
}

Test(note, dropping_rules)
{
    call_facts f = {0};

    f.call_sid = SID;
    f.status = "busy";
    f.duration_seconds = -1;
    /* Literal-only and empty lines stay; a line with one of two placeholders known stays. */
    expect_render("Título\n\n{status} {recording_url}\nGravação: {recording_url}\n"
                  "{price}{answered_by}\nfim",
                  &f, "Título\n\nbusy \nfim\n" MARKER);
    /* A dropped last line takes no newline with it; a trailing newline is kept. */
    expect_render("a\n{caller_name}", &f, "a\n" MARKER);
    expect_render("a\n", &f, "a\n" MARKER);
}

Test(note, marker_always_present)
{
    call_facts f = full_facts();

    expect_render("", &f, MARKER);
    expect_render("{recording_url}", &f,
                  "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1\n" MARKER);
    f.recording_url = NULL;
    expect_render("{recording_url}", &f, MARKER);
    expect_render("{marker} antes", &f, MARKER " antes");
}

Test(note, values_cannot_forge_markers_or_lines)
{
    call_facts f = full_facts();
    char *out;

    f.caller_name = "EVIL [calllog:CAother] \n[calllog:" SID "]\tX";
    out = render("Nome: {caller_name}", &f);
    cr_expect_str_eq(out, "Nome: EVIL (calllog:CAother]  (calllog:" SID "] X\n" MARKER);
    cr_expect_eq(note_has_marker(out, "CAother"), 0);
    cr_expect_eq(note_has_marker(out, SID), 1);
    free(out);
}

Test(note, invalid_utf8_values_are_replaced)
{
    call_facts f = full_facts();

    f.caller_name = "Jos\xe9 \xc3\xa9 \xed\xa0\x80!"; /* Latin-1 é, real é, a surrogate */
    expect_render("{caller_name}", &f, "Jos? é ?\?\?!\n" MARKER);
}

Test(note, compile_errors)
{
    expect_compile_error("De: {from}\nX: {nope}", "unknown placeholder {nope} at line 2");
    expect_compile_error("{Status}", "unknown placeholder {Status}");
    expect_compile_error("a {status", "unterminated placeholder at line 1");
    expect_compile_error("a {sta\ntus}", "unterminated placeholder");
    expect_compile_error("a {}", "empty placeholder");
    expect_compile_error("a } b", "stray '}' at line 1");
    expect_compile_error("{{status}", "stray '}'");
    expect_compile_error("\xff{status}", "UTF-8");
}

Test(note, compile_error_without_an_error_to_fill)
{
    cr_expect_null(note_template_compile("{nope}", NULL));
}

Test(note, render_rejects_bad_arguments)
{
    note_template *t = note_template_compile(NULL, NULL);
    call_facts f = full_facts();
    char *out = (char *)"sentinel";

    cr_assert_not_null(t);
    f.call_sid = NULL;
    cr_expect_eq(note_render(t, &f, &out), CALLLOG_INVALID);
    cr_expect_null(out);
    f.call_sid = "";
    cr_expect_eq(note_render(t, &f, &out), CALLLOG_INVALID);
    f.call_sid = "CA12]x";
    cr_expect_eq(note_render(t, &f, &out), CALLLOG_INVALID);
    f.call_sid = SID;
    cr_expect_eq(note_render(NULL, &f, &out), CALLLOG_INVALID);
    cr_expect_eq(note_render(t, NULL, &out), CALLLOG_INVALID);
    cr_expect_eq(note_render(t, &f, NULL), CALLLOG_INVALID);
    note_template_free(t);
    note_template_free(NULL);
}

Test(note, marker_helpers)
{
    char m[NOTE_MARKER_MAX];
    char small[8];
    char long_sid[NOTE_CALL_SID_MAX + 2];

    cr_expect_eq(note_marker(SID, m, sizeof m), (int)strlen(MARKER));
    cr_expect_str_eq(m, MARKER);
    cr_expect_eq(note_marker(SID, small, sizeof small), -1);
    cr_expect_eq(note_marker("CA 1", m, sizeof m), -1);
    cr_expect_eq(note_marker(NULL, m, sizeof m), -1);
    memset(long_sid, 'A', sizeof long_sid - 1);
    long_sid[sizeof long_sid - 1] = '\0';
    cr_expect_eq(note_marker(long_sid, m, sizeof m), -1);
    long_sid[NOTE_CALL_SID_MAX] = '\0';
    cr_expect_gt(note_marker(long_sid, m, sizeof m), 0);

    cr_expect_eq(note_has_marker("texto\n" MARKER, SID), 1);
    cr_expect_eq(note_has_marker("texto [calllog:" SID "0]", SID), 0); /* longer sid */
    cr_expect_eq(note_has_marker("texto [calllog:CA01]", "CA0"), 0);   /* prefix sid */
    cr_expect_eq(note_has_marker("texto " SID, SID), 0);
    cr_expect_eq(note_has_marker(NULL, SID), 0);
    cr_expect_eq(note_has_marker(MARKER, NULL), 0);
}

Test(note, rendered_note_has_its_marker)
{
    call_facts f = full_facts();
    char *out = render("{status}", &f);

    cr_expect_eq(note_has_marker(out, SID), 1);
    cr_expect_eq(note_has_marker(out, "CAffffffffffffffffffffffffffffffff"), 0);
    free(out);
}

Test(note, default_template_text)
{
    const char *d = note_default_template();
    const char *first = "{direction_label} — {status_label}\n";

    cr_expect_eq(strncmp(d, first, strlen(first)), 0);
    cr_expect_not_null(strstr(d, "\nGravação: {recording_url}\n{marker}"));
}

Test(note_tz, sao_paulo_before_2019_had_summer_time)
{
    call_facts f = full_facts();

    cr_assert_eq(timing_set_zone(NULL, NULL), CALLLOG_OK); /* default zone */
    f.start = 1516017600;                                  /* 2018-01-15 12:00 UTC */
    f.end = 1704076200;                                    /* 2024-01-01 02:30 UTC */
    expect_render("{start} / {end}", &f, "15/01/2018 10:00 / 31/12/2023 23:30\n" MARKER);
}

Test(note_tz, utc_and_other_zones)
{
    call_facts f = full_facts();

    cr_assert_eq(timing_set_zone("UTC", NULL), CALLLOG_OK);
    expect_render("{start}", &f, "10/03/2024 15:04\n" MARKER);
    cr_assert_eq(timing_set_zone("Asia/Kolkata", NULL), CALLLOG_OK);
    expect_render("{start}", &f, "10/03/2024 20:34\n" MARKER);
}

/* base64url(HMAC-SHA256("note-link-secret-0123456789", SID)), computed with Python. */
#define LINK_SECRET "note-link-secret-0123456789"
#define LINK_MAC "OeMGS0Q7g0fHvDypoaRGJ5p95U--gpc2bHNhzR77PwM"

/* Compiles the default template with recording links on (`ttl_days`) and renders `f`. */
static char *render_linked(const call_facts *f, long ttl_days)
{
    note_template *t = note_template_compile(NULL, NULL);
    char *out = NULL;
    cr_assert_not_null(t);
    cr_assert_eq(
        note_template_set_recording_links(t, "https://calllog.example.com", LINK_SECRET, ttl_days),
        CALLLOG_OK);
    cr_assert_eq(note_render(t, f, &out), CALLLOG_OK);
    note_template_free(t);
    cr_assert_not_null(out);
    return out;
}

Test(note, recording_link_replaces_twilio_media_url)
{
    call_facts f = full_facts();
    char *out = render_linked(&f, 0);
    cr_expect(strstr(out, "Gravação: https://calllog.example.com/recordings/" SID "?t=" LINK_MAC
                          "\n") != NULL,
              "%s", out);
    cr_expect(strstr(out, "api.twilio.com") == NULL, "%s", out);
    free(out);
}

Test(note, recording_link_expires_ttl_days_after_the_call_ended)
{
    call_facts f = full_facts();
    char *out = render_linked(&f, 7);
    cr_expect(strstr(out, "?t=1710688170.0hgxQYXjUst0U2d9TQEXbIhNUCIJ8-U4ODLkZiIQAXk\n") != NULL,
              "%s", out);
    free(out);
}

Test(note, no_recording_no_link_line)
{
    call_facts f = full_facts();
    f.recording_url = NULL;
    char *out = render_linked(&f, 0);
    cr_expect(strstr(out, "Gravação") == NULL, "%s", out);
    cr_expect(strstr(out, "/recordings/") == NULL, "%s", out);
    free(out);
}

Test(note, recording_links_refuse_unusable_settings)
{
    note_template *t = note_template_compile(NULL, NULL);
    cr_assert_not_null(t);
    cr_expect_eq(note_template_set_recording_links(t, "https://x.example", "short", 0),
                 CALLLOG_INVALID);
    cr_expect_eq(note_template_set_recording_links(t, NULL, LINK_SECRET, 0), CALLLOG_INVALID);
    cr_expect_eq(note_template_set_recording_links(t, "https://x.example", LINK_SECRET, -1),
                 CALLLOG_INVALID);
    call_facts f = full_facts();
    char *out = NULL;
    cr_assert_eq(note_render(t, &f, &out), CALLLOG_OK);
    cr_expect(strstr(out, f.recording_url) != NULL, "refused settings change nothing: %s", out);
    free(out);
    note_template_free(t);
}

Test(note, recording_still_processing_gets_the_link_only_with_links_on)
{
    call_facts f = full_facts();
    f.recording_url = NULL;
    f.recording_pending = 1;
    char *out = render_linked(&f, 0);
    cr_expect(strstr(out, "Gravação: https://calllog.example.com/recordings/" SID "?t=" LINK_MAC
                          "\n") != NULL,
              "the link plays once the recording is done: %s", out);
    free(out);
    out = render(NULL, &f);
    cr_expect(strstr(out, "Gravação") == NULL, "no Twilio URL exists yet: %s", out);
    free(out);
}
