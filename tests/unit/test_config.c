/* test_config — unit tests for common/config (settings from the environment and an env file).
 *
 * Criterion runs every test in its own process, so setenv() in one test never leaks into
 * another. Env files are written to mkstemp files under /tmp and removed afterwards.
 *
 * Covered: env file syntax (comments, blank lines, `export `, single and double quotes,
 * whitespace, `=` inside values, empty values, unmatched quotes), refusals (no `=`, empty or
 * bad variable name, a line over the 4095-byte buffer, a missing file) with the line number,
 * the environment winning over the file, and every typed getter's accepted forms, default
 * and refusal — each refusal naming the setting; secrets from NAME_FILE (one trailing
 * newline trimmed, read once, an empty environment value counting as unset, both set,
 * missing, directory, empty and oversized files refused naming NAME_FILE, the typed
 * getters and config_require_all reading files, config_check). */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"

/* Writes `text` to a new temporary file; its path goes into `path` (64 bytes). */
static void write_env_file(char *path, const char *text)
{
    snprintf(path, 64, "/tmp/calllog-test-config-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp failed");
    size_t n = strlen(text);
    cr_assert_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
}

/* Loads `text` as an env file; returns config_load_env_file's result, error in `err`. */
static int load_text(const char *text, calllog_error *err)
{
    char path[64];
    write_env_file(path, text);
    memset(err, 0, sizeof *err);
    int rc = config_load_env_file(path, err);
    unlink(path);
    return rc;
}

/* Asserts that variable `name` holds exactly `want`. */
static void assert_env(const char *name, const char *want)
{
    const char *v = getenv(name);
    cr_assert(v != NULL, "%s is not set", name);
    cr_assert_str_eq(v, want, "%s", name);
}

/* ---- env file ---------------------------------------------------------------------------- */

Test(config_env_file, plain_lines_comments_and_blank_lines)
{
    calllog_error err;
    cr_assert_eq(load_text("# a comment\n"
                           "\n"
                           "   \n"
                           "CT_A=alpha\n"
                           "  # indented comment\n"
                           "CT_B=two words\n",
                           &err),
                 0, "%s", err.message);
    assert_env("CT_A", "alpha");
    assert_env("CT_B", "two words");
}

Test(config_env_file, export_prefix_and_whitespace)
{
    calllog_error err;
    cr_assert_eq(load_text("export CT_EXP=1\n"
                           "  export   CT_EXP2 = spaced  \n"
                           "\tCT_TAB\t=\tx\t\n",
                           &err),
                 0, "%s", err.message);
    assert_env("CT_EXP", "1");
    assert_env("CT_EXP2", "spaced");
    assert_env("CT_TAB", "x");
}

Test(config_env_file, quotes_are_removed_once)
{
    calllog_error err;
    cr_assert_eq(load_text("CT_DQ=\"double # not a comment\"\n"
                           "CT_SQ='single'\n"
                           "CT_INNER=\"'kept'\"\n"
                           "CT_SPACES=\"  padded  \"\n"
                           "CT_EMPTYQ=\"\"\n"
                           "CT_MISMATCH=\"open'\n"
                           "CT_LONE=\"\n",
                           &err),
                 0, "%s", err.message);
    assert_env("CT_DQ", "double # not a comment");
    assert_env("CT_SQ", "single");
    assert_env("CT_INNER", "'kept'");
    assert_env("CT_SPACES", "  padded  ");
    assert_env("CT_EMPTYQ", "");
    assert_env("CT_MISMATCH", "\"open'");
    assert_env("CT_LONE", "\"");
}

Test(config_env_file, value_keeps_equals_signs_and_may_be_empty)
{
    calllog_error err;
    cr_assert_eq(load_text("CT_URL=postgresql://u:p@h/db?sslmode=require&x=1\n"
                           "CT_EMPTY=\n",
                           &err),
                 0, "%s", err.message);
    assert_env("CT_URL", "postgresql://u:p@h/db?sslmode=require&x=1");
    assert_env("CT_EMPTY", "");
}

Test(config_env_file, last_line_without_newline)
{
    calllog_error err;
    cr_assert_eq(load_text("CT_LAST=end", &err), 0, "%s", err.message);
    assert_env("CT_LAST", "end");
}

Test(config_env_file, crlf_line_endings)
{
    calllog_error err;
    cr_assert_eq(load_text("CT_CRLF=dos\r\nCT_CRLF2='q'\r\n", &err), 0, "%s", err.message);
    assert_env("CT_CRLF", "dos");
    assert_env("CT_CRLF2", "q");
}

Test(config_env_file, environment_wins_over_file)
{
    setenv("CT_WIN", "from-env", 1);
    calllog_error err;
    cr_assert_eq(load_text("CT_WIN=from-file\nCT_NEW=from-file\n", &err), 0, "%s", err.message);
    assert_env("CT_WIN", "from-env");
    assert_env("CT_NEW", "from-file");
}

Test(config_env_file, first_definition_in_file_wins)
{
    calllog_error err;
    cr_assert_eq(load_text("CT_TWICE=first\nCT_TWICE=second\n", &err), 0, "%s", err.message);
    assert_env("CT_TWICE", "first");
}

Test(config_env_file, line_without_equals_is_refused_with_line_number)
{
    calllog_error err;
    cr_assert_eq(load_text("CT_OK=1\n# c\nJUST_A_WORD\nCT_AFTER=1\n", &err), -1);
    cr_assert(strstr(err.message, "line 3") != NULL, "%s", err.message);
    cr_assert(strstr(err.message, "expected KEY=VALUE") != NULL, "%s", err.message);
    cr_assert_null(getenv("CT_AFTER"), "loading must stop at the bad line");
}

Test(config_env_file, empty_name_is_refused)
{
    calllog_error err;
    cr_assert_eq(load_text("=value\n", &err), -1);
    cr_assert(strstr(err.message, "line 1") != NULL, "%s", err.message);
}

Test(config_env_file, bad_variable_names_are_refused)
{
    const char *bad[] = {"CT-DASH=1\n", "CT.DOT=1\n", "CT SPACE=1\n", "CT$=1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        calllog_error err;
        cr_assert_eq(load_text(bad[i], &err), -1, "accepted %s", bad[i]);
        cr_assert(strstr(err.message, "bad variable name") != NULL, "%s: %s", bad[i], err.message);
        cr_assert(strstr(err.message, "line 1") != NULL, "%s", err.message);
    }
}

Test(config_env_file, too_long_line_is_refused)
{
    size_t n = 5000;
    char *text = malloc(n + 32);
    cr_assert_not_null(text);
    strcpy(text, "CT_OK=1\nCT_LONG=");
    size_t used = strlen(text);
    memset(text + used, 'x', n);
    strcpy(text + used + n, "\nCT_AFTER=1\n");
    calllog_error err;
    cr_assert_eq(load_text(text, &err), -1);
    cr_assert(strstr(err.message, "line 2") != NULL, "%s", err.message);
    cr_assert(strstr(err.message, "too long") != NULL, "%s", err.message);
    cr_assert_null(getenv("CT_LONG"), "a truncated value must not be set");
    free(text);
}

Test(config_env_file, longest_line_that_fits_is_accepted)
{
    /* fgets' buffer is 4096 bytes: 4094 characters + newline + NUL. */
    char text[4200];
    strcpy(text, "CT_FIT=");
    size_t used = strlen(text);
    memset(text + used, 'y', 4094 - used);
    strcpy(text + 4094, "\n");
    calllog_error err;
    cr_assert_eq(load_text(text, &err), 0, "%s", err.message);
    cr_assert_eq(strlen(getenv("CT_FIT")), 4094 - used);
}

Test(config_env_file, missing_file_is_an_error)
{
    calllog_error err;
    cr_assert_eq(config_load_env_file("/nonexistent/calllog/.env", &err), -1);
    cr_assert(strstr(err.message, "/nonexistent/calllog/.env") != NULL, "%s", err.message);
}

/* ---- config_str / config_require ---------------------------------------------------------- */

Test(config_str, unset_and_empty_give_default)
{
    unsetenv("CT_S");
    cr_assert_str_eq(config_str("CT_S", "def"), "def");
    setenv("CT_S", "", 1);
    cr_assert_str_eq(config_str("CT_S", "def"), "def");
    cr_assert_null(config_str("CT_S", NULL));
    setenv("CT_S", "val", 1);
    cr_assert_str_eq(config_str("CT_S", "def"), "val");
}

Test(config_require, unset_or_empty_is_an_error_naming_the_setting)
{
    calllog_error err = {0};
    const char *out = "untouched";
    unsetenv("CT_REQ");
    cr_assert_eq(config_require("CT_REQ", &out, &err), -1);
    cr_assert(strstr(err.message, "CT_REQ") != NULL, "%s", err.message);
    setenv("CT_REQ", "", 1);
    cr_assert_eq(config_require("CT_REQ", &out, &err), -1);
    setenv("CT_REQ", "here", 1);
    cr_assert_eq(config_require("CT_REQ", &out, &err), 0);
    cr_assert_str_eq(out, "here");
}

Test(config_require_all, names_every_missing_setting_in_one_line)
{
    calllog_error err = {0};
    static const char *const names[] = {"CT_RA", "CT_RB", "CT_RC", NULL};
    setenv("CT_RA", "set", 1);
    unsetenv("CT_RB");
    setenv("CT_RC", "", 1);
    cr_assert_eq(config_require_all(names, &err), -1);
    cr_expect_str_eq(err.message, "settings CT_RB, CT_RC are required but not set");
    setenv("CT_RC", "x", 1);
    cr_assert_eq(config_require_all(names, &err), -1);
    cr_expect_str_eq(err.message, "setting CT_RB is required but not set");
    setenv("CT_RB", "y", 1);
    cr_expect_eq(config_require_all(names, &err), 0);
}

/* ---- config_long ---------------------------------------------------------------------------- */

Test(config_long, default_when_unset_or_empty)
{
    calllog_error err;
    long v = 0;
    unsetenv("CT_L");
    cr_assert_eq(config_long("CT_L", 42, 1, 100, &v, &err), 0);
    cr_assert_eq(v, 42);
    setenv("CT_L", "", 1);
    v = 0;
    cr_assert_eq(config_long("CT_L", 43, 1, 100, &v, &err), 0);
    cr_assert_eq(v, 43);
}

Test(config_long, accepts_values_in_range_including_bounds)
{
    calllog_error err;
    long v = 0;
    setenv("CT_L", "1", 1);
    cr_assert_eq(config_long("CT_L", 5, 1, 100, &v, &err), 0);
    cr_assert_eq(v, 1);
    setenv("CT_L", "100", 1);
    cr_assert_eq(config_long("CT_L", 5, 1, 100, &v, &err), 0);
    cr_assert_eq(v, 100);
    setenv("CT_L", "-7", 1);
    cr_assert_eq(config_long("CT_L", 5, -10, 10, &v, &err), 0);
    cr_assert_eq(v, -7);
}

Test(config_long, refusals_name_the_setting_and_range)
{
    const char *bad[] = {"abc", "10x", "0", "101", "1.5", " ", "99999999999999999999999", "0x10"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        calllog_error err = {0};
        long v = -1;
        setenv("RETRY_MAX_ATTEMPTS", bad[i], 1);
        cr_assert_eq(config_long("RETRY_MAX_ATTEMPTS", 5, 1, 100, &v, &err), -1, "accepted '%s'",
                     bad[i]);
        cr_assert_str_eq(err.message,
                         "setting RETRY_MAX_ATTEMPTS is malformed: expected an integer from 1 to "
                         "100",
                         "for '%s'", bad[i]);
        cr_assert_eq(v, -1, "out written on error for '%s'", bad[i]);
    }
}

/* ---- config_bool ---------------------------------------------------------------------------- */

Test(config_bool, all_spellings_any_case)
{
    const char *yes[] = {"1", "true", "TRUE", "yes", "Yes", "on", "ON"};
    const char *no[] = {"0", "false", "False", "no", "NO", "off", "Off"};
    calllog_error err;
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        int v = 0;
        setenv("CT_B", yes[i], 1);
        cr_assert_eq(config_bool("CT_B", 0, &v, &err), 0, "%s", yes[i]);
        cr_assert_eq(v, 1, "%s", yes[i]);
    }
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
        int v = 1;
        setenv("CT_B", no[i], 1);
        cr_assert_eq(config_bool("CT_B", 1, &v, &err), 0, "%s", no[i]);
        cr_assert_eq(v, 0, "%s", no[i]);
    }
}

Test(config_bool, default_and_refusal)
{
    calllog_error err = {0};
    int v = -1;
    unsetenv("TWILIO_ENRICH");
    cr_assert_eq(config_bool("TWILIO_ENRICH", 1, &v, &err), 0);
    cr_assert_eq(v, 1);
    const char *bad[] = {"maybe", "2", "y", "truee", " 1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv("TWILIO_ENRICH", bad[i], 1);
        v = -1;
        cr_assert_eq(config_bool("TWILIO_ENRICH", 1, &v, &err), -1, "accepted '%s'", bad[i]);
        cr_assert(strncmp(err.message, "setting TWILIO_ENRICH is malformed: ", 36) == 0, "%s",
                  err.message);
        cr_assert_eq(v, -1);
    }
}

/* ---- config_listen -------------------------------------------------------------------------- */

/* Runs config_listen on value `v` (NULL = unset) with default `def`. */
static int listen_of(const char *v, const char *def, char *host, int *port, calllog_error *err)
{
    if (v)
        setenv("CT_LISTEN", v, 1);
    else
        unsetenv("CT_LISTEN");
    strcpy(host, "untouched");
    *port = -1;
    return config_listen("CT_LISTEN", def, host, 64, port, err);
}

Test(config_listen, accepted_forms)
{
    struct {
        const char *in, *host;
        int port;
    } ok[] = {
        {"0.0.0.0:8080", "0.0.0.0", 8080},
        {"127.0.0.1:9101", "127.0.0.1", 9101},
        {":9000", "", 9000},
        {"*:80", "", 80},
        {"[::1]:8080", "::1", 8080},
        {"[::]:443", "::", 443},
        {"localhost:0", "localhost", 0},
        {"example.com:65535", "example.com", 65535},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char host[64];
        int port;
        calllog_error err = {0};
        cr_assert_eq(listen_of(ok[i].in, "1.2.3.4:1", host, &port, &err), 0, "%s: %s", ok[i].in,
                     err.message);
        cr_assert_str_eq(host, ok[i].host, "%s", ok[i].in);
        cr_assert_eq(port, ok[i].port, "%s", ok[i].in);
    }
}

Test(config_listen, default_when_unset)
{
    char host[64];
    int port;
    calllog_error err;
    cr_assert_eq(listen_of(NULL, "0.0.0.0:8080", host, &port, &err), 0);
    cr_assert_str_eq(host, "0.0.0.0");
    cr_assert_eq(port, 8080);
}

Test(config_listen, refusals_name_the_setting)
{
    const char *bad[] = {"8080", "host", "host:", "host:http", "host:-1", "host:65536", "host:80x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char host[64];
        int port;
        calllog_error err = {0};
        cr_assert_eq(listen_of(bad[i], "0.0.0.0:8080", host, &port, &err), -1, "accepted '%s'",
                     bad[i]);
        cr_assert(strncmp(err.message, "setting CT_LISTEN is malformed: ", 32) == 0, "%s: %s",
                  bad[i], err.message);
        cr_assert_eq(port, -1, "port written for '%s'", bad[i]);
    }
}

Test(config_listen, host_too_long_for_buffer)
{
    char big[200];
    memset(big, 'h', 100);
    strcpy(big + 100, ":80");
    char host[64];
    int port;
    calllog_error err = {0};
    cr_assert_eq(listen_of(big, NULL, host, &port, &err), -1);
    cr_assert(strstr(err.message, "CT_LISTEN") != NULL, "%s", err.message);
}

Test(config_listen, bad_default_is_reported_too)
{
    char host[64];
    int port;
    calllog_error err = {0};
    cr_assert_eq(listen_of(NULL, "nocolon", host, &port, &err), -1);
    cr_assert(strstr(err.message, "CT_LISTEN") != NULL, "%s", err.message);
}

/* ---- config_choice -------------------------------------------------------------------------- */

static const char *const formats[] = {"json", "text", NULL};

Test(config_choice, picks_index_or_default)
{
    calllog_error err;
    int idx = -1;
    setenv("LOG_FORMAT", "text", 1);
    cr_assert_eq(config_choice("LOG_FORMAT", "json", formats, &idx, &err), 0);
    cr_assert_eq(idx, 1);
    unsetenv("LOG_FORMAT");
    idx = -1;
    cr_assert_eq(config_choice("LOG_FORMAT", "json", formats, &idx, &err), 0);
    cr_assert_eq(idx, 0);
}

Test(config_choice, refusal_names_setting_and_lists_choices)
{
    calllog_error err = {0};
    int idx = -1;
    setenv("LOG_FORMAT", "JSON", 1); /* choices are case-sensitive */
    cr_assert_eq(config_choice("LOG_FORMAT", "json", formats, &idx, &err), -1);
    cr_assert_str_eq(err.message, "setting LOG_FORMAT is malformed: expected one of: json text");
    cr_assert_eq(idx, -1);
}

Test(config_choice, unset_without_default_is_an_error)
{
    calllog_error err = {0};
    int idx = -1;
    unsetenv("RDSTATION_API");
    static const char *const apis[] = {"v1", "v2", NULL};
    cr_assert_eq(config_choice("RDSTATION_API", NULL, apis, &idx, &err), -1);
    cr_assert(strstr(err.message, "RDSTATION_API") != NULL, "%s", err.message);
    cr_assert(strstr(err.message, "v1 v2") != NULL, "%s", err.message);
}

Test(config_fail, formats_the_message)
{
    calllog_error err;
    cr_assert_eq(config_fail(&err, "X_Y", "because"), -1);
    cr_assert_str_eq(err.message, "setting X_Y is malformed: because");
    cr_assert_eq(config_fail(NULL, "X_Y", "because"), -1);
}

/* ---- secrets from files (NAME_FILE) ------------------------------------------------------- */

/* Writes `text` to a new temporary file and points `NAME_FILE` at it; path in `path`. */
static void set_secret_file(const char *name, const char *text, char *path)
{
    char var[64];
    write_env_file(path, text);
    snprintf(var, sizeof var, "%s_FILE", name);
    setenv(var, path, 1);
}

Test(config_file, value_comes_from_the_file_without_one_trailing_newline)
{
    char path[64];
    unsetenv("CT_SECRET");
    set_secret_file("CT_SECRET", "s3cr3t-token\n", path);
    const char *v = config_str("CT_SECRET", "def");
    cr_assert_str_eq(v, "s3cr3t-token");
    /* Read once: the same pointer, even after the file changed or went away. */
    unlink(path);
    cr_expect_eq(config_str("CT_SECRET", NULL), v);
    calllog_error err = {0};
    const char *out = NULL;
    cr_expect_eq(config_require("CT_SECRET", &out, &err), 0, "%s", err.message);
    cr_expect_eq(out, v);
    cr_expect_eq(config_check(&err), 0, "%s", err.message);
}

Test(config_file, only_one_newline_is_trimmed_and_crlf_counts_as_one)
{
    char a[64], b[64], c[64];
    unsetenv("CT_FA");
    unsetenv("CT_FB");
    unsetenv("CT_FC");
    set_secret_file("CT_FA", "line\n\n", a);
    set_secret_file("CT_FB", "win\r\n", b);
    set_secret_file("CT_FC", "  spaced  ", c);
    cr_expect_str_eq(config_str("CT_FA", NULL), "line\n");
    cr_expect_str_eq(config_str("CT_FB", NULL), "win");
    cr_expect_str_eq(config_str("CT_FC", NULL), "  spaced  ");
    unlink(a);
    unlink(b);
    unlink(c);
}

Test(config_file, empty_value_in_the_environment_counts_as_unset)
{
    char path[64];
    setenv("CT_EMPTY", "", 1);
    set_secret_file("CT_EMPTY", "from-file", path);
    cr_expect_str_eq(config_str("CT_EMPTY", NULL), "from-file");
    unlink(path);
}

Test(config_file, both_set_is_an_error_naming_both)
{
    char path[64];
    calllog_error err = {0};
    const char *out = "untouched";
    setenv("CT_BOTH", "direct", 1);
    set_secret_file("CT_BOTH", "from-file", path);
    cr_expect_eq(config_require("CT_BOTH", &out, &err), -1);
    cr_expect_str_eq(err.message, "settings CT_BOTH and CT_BOTH_FILE are both set: set only one of "
                                  "them");
    cr_expect_str_eq(out, "untouched");
    cr_expect_str_eq(config_str("CT_BOTH", "def"), "def", "neither value is used");
    memset(&err, 0, sizeof err);
    cr_expect_eq(config_check(&err), -1);
    cr_expect_not_null(strstr(err.message, "CT_BOTH_FILE"), "%s", err.message);
    unlink(path);
}

Test(config_file, unreadable_file_is_an_error_naming_the_setting)
{
    calllog_error err = {0};
    const char *out = NULL;
    unsetenv("CT_GONE");
    setenv("CT_GONE_FILE", "/nonexistent/calllog/secret", 1);
    cr_expect_eq(config_require("CT_GONE", &out, &err), -1);
    cr_expect_str_eq(err.message, "setting CT_GONE_FILE: cannot read /nonexistent/calllog/secret: "
                                  "No such file or directory");
    /* A setting with a default: config_str falls back, config_check tells. */
    unsetenv("CT_GONE2");
    setenv("CT_GONE2_FILE", "/nonexistent/calllog/secret2", 1);
    cr_expect_str_eq(config_str("CT_GONE2", "redis://127.0.0.1:6379/0"),
                     "redis://127.0.0.1:6379/0");
    cr_expect_eq(config_check(&err), -1);
    cr_expect_not_null(strstr(err.message, "CT_GONE"), "%s", err.message);
}

Test(config_file, directory_is_unreadable)
{
    calllog_error err = {0};
    const char *out = NULL;
    unsetenv("CT_DIR");
    setenv("CT_DIR_FILE", "/tmp", 1);
    cr_expect_eq(config_require("CT_DIR", &out, &err), -1);
    cr_expect_str_eq(err.message, "setting CT_DIR_FILE: cannot read /tmp: Is a directory");
}

Test(config_file, empty_file_is_an_error)
{
    static const char *const texts[] = {"", "\n", "\r\n"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        char name[32], path[64], want[160];
        calllog_error err = {0};
        const char *out = NULL;
        snprintf(name, sizeof name, "CT_EMPTYFILE%zu", i);
        unsetenv(name);
        set_secret_file(name, texts[i], path);
        cr_expect_eq(config_require(name, &out, &err), -1);
        snprintf(want, sizeof want, "setting %s_FILE: %s is empty", name, path);
        cr_expect_str_eq(err.message, want);
        unlink(path);
    }
}

Test(config_file, oversized_file_is_an_error)
{
    char path[64];
    calllog_error err = {0};
    const char *out = NULL;
    char *big = malloc(70000);
    cr_assert_not_null(big, "out of memory");
    memset(big, 'x', 69999);
    big[69999] = '\0';
    unsetenv("CT_BIG");
    set_secret_file("CT_BIG", big, path);
    free(big);
    cr_expect_eq(config_require("CT_BIG", &out, &err), -1);
    cr_expect_not_null(strstr(err.message, "over 65536 bytes"), "%s", err.message);
    unlink(path);
}

Test(config_file, typed_getters_and_require_all_read_files_too)
{
    char a[64], b[64];
    calllog_error err = {0};
    long n = 0;
    static const char *const names[] = {"CT_RFA", "CT_RFB", NULL};
    unsetenv("CT_NUM");
    unsetenv("CT_RFA");
    unsetenv("CT_RFB");
    set_secret_file("CT_NUM", "42\n", a);
    cr_expect_eq(config_long("CT_NUM", 1, 0, 100, &n, &err), 0, "%s", err.message);
    cr_expect_eq(n, 42);
    setenv("CT_RFA", "set", 1);
    set_secret_file("CT_RFB", "tok", b);
    cr_expect_eq(config_require_all(names, &err), 0, "%s", err.message);
    /* A broken file is reported as what it is, not as "not set". */
    setenv("CT_RFB_FILE", "/nonexistent/x", 1);
    unsetenv("CT_RFA");
    setenv("CT_RFA_FILE", "/nonexistent/y", 1);
    cr_expect_eq(config_require_all(names, &err), -1);
    cr_expect_str_eq(err.message,
                     "setting CT_RFA_FILE: cannot read /nonexistent/y: No such file or "
                     "directory");
    unlink(a);
    unlink(b);
}

Test(config_file, no_file_setting_no_error)
{
    calllog_error err = {0};
    unsetenv("CT_PLAIN_FILE");
    setenv("CT_PLAIN", "v", 1);
    cr_expect_str_eq(config_str("CT_PLAIN", NULL), "v");
    setenv("CT_PLAIN_FILE", "", 1);
    cr_expect_str_eq(config_str("CT_PLAIN", NULL), "v", "an empty NAME_FILE is unset");
    cr_expect_eq(config_check(&err), 0);
}
