/* test_ledger — worker/ledger and its migration against a real PostgreSQL.
 *
 * The server is the one at CALLLOG_TEST_DATABASE_URL (tests/run.sh starts it through
 * tests/lib/services.sh); without it every test fails, saying so. Each test drops schema
 * `calllog`, applies the migrations of deploy/supabase/migrations/ twice (idempotence)
 * and works on that fresh schema; a session advisory lock held by the fixture serializes
 * the test processes criterion runs in parallel, since they share the one schema.
 *
 * Covered: the migration (twice, with psql too, RLS, Supabase's anon/authenticated roles,
 * which plain PostgreSQL lacks and one test creates), the schema check and its advice,
 * every claim outcome (won, finished, dead, busy, expired lease with post_started), the
 * round trips of a delivered call (three) and of its duplicates (ledger_round_trips),
 * the lease-owner checks of the marks, retry_wait, owner-less marks of poison entries,
 * resets, state counts, two connections racing on one CallSid 200 times, and — through
 * a small TCP proxy that reads the wire protocol — that only unnamed statements and no
 * simple queries (SET) are sent, and that a lost connection, a lost answer after commit
 * and a server that stops answering are survived without a second win. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/lib/pg_fixture.h"
#include "worker/ledger.h"

#define URL_ENV "CALLLOG_TEST_DATABASE_URL"
#define LOCK_SQL "SELECT pg_advisory_lock(7320151)"
#define LEASE_MS 60000L
#define RACE_ROUNDS 200

/* The fixture's connection (test processes run one test at a time; see setup). */
static PGconn *admin;

/* ---- fixture --------------------------------------------------------------------- */

/* Swallows the server's NOTICEs ("schema already exists, skipping"). */
static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* The test database's URL; fails the test when the variable is not set. */
static const char *test_url(void)
{
    const char *u = getenv(URL_ENV);
    cr_assert(u && u[0],
              URL_ENV " is not set: these tests need a real PostgreSQL. Run `bash tests/run.sh`, "
                      "or `. tests/lib/services.sh && services_start` and run them again.");
    return u;
}

/* Runs `sql` (one or more statements) on the fixture connection; fails on error. */
static void admin_exec(const char *sql)
{
    pg_fixture_conn_exec(admin, sql);
}

/* First column of the first row of `sql` with $1 = `arg` (may be NULL) as text into
 * `out`; "(null)" for SQL NULL, "(none)" when there is no row. */
static char *admin_value(const char *sql, const char *arg, char *out, size_t outlen)
{
    return pg_fixture_conn_value(admin, sql, arg, out, outlen);
}

/* Column `col` (an SQL expression over the row) of the ledger row of `sid`, as text. */
static char *row_col(const char *sid, const char *col, char *out, size_t outlen)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT (%s)::text FROM calllog.deliveries WHERE call_sid = $1", col);
    return admin_value(sql, sid, out, outlen);
}

/* Applies every migration once on the fixture connection. */
static void apply_migrations(void)
{
    pg_fixture_migrate(admin);
}

/* Connects, takes the lock that serializes test processes, and rebuilds the schema by
 * applying the migrations twice. */
static void setup(void)
{
    const char *url = test_url();
    admin = PQconnectdb(url);
    cr_assert(PQstatus(admin) == CONNECTION_OK, "cannot connect to " URL_ENV ": %s",
              PQerrorMessage(admin));
    PQsetNoticeProcessor(admin, quiet, NULL);
    admin_exec(LOCK_SQL);
    admin_exec("DROP SCHEMA IF EXISTS calllog CASCADE");
    apply_migrations();
    apply_migrations();
}

static void teardown(void)
{
    if (admin)
        PQfinish(admin); /* also releases the advisory lock */
    admin = NULL;
}

TestSuite(ledger, .init = setup, .fini = teardown);

/* Opens a ledger on `url`; fails the test when that does not work. */
static ledger *open_on(const char *url)
{
    calllog_error err = {0};
    ledger *l = ledger_open(url, &err);
    cr_assert(l, "ledger_open: %s", err.message);
    return l;
}

/* Opens a ledger on the test database. */
static ledger *open_ledger(void)
{
    return open_on(test_url());
}

/* Claims `sid` for `owner`; fails the test on a database error. */
static ledger_claim_result claim(ledger *l, const char *sid, const char *owner)
{
    ledger_claim_result c;
    int rc = ledger_claim(l, sid, "completed", owner, LEASE_MS, "{\"call_sid\":\"x\"}", &c);
    cr_assert_eq(rc, 0, "ledger_claim(%s, %s): %s", sid, owner, ledger_error(l)->message);
    return c;
}

/* Makes the lease on `sid` run out, as if its holder died long ago. */
static void expire_lease(const char *sid)
{
    char out[16];
    admin_value("UPDATE calllog.deliveries SET lease_expires_at = now() - interval '1 second'"
                " WHERE call_sid = $1 RETURNING 1",
                sid, out, sizeof out);
    cr_assert_str_eq(out, "1");
}

/* ---- migration ------------------------------------------------------------------- */

Test(ledger, migration_twice_builds_schema_with_rls)
{
    char v[64];
    cr_expect_str_eq(admin_value("SELECT relrowsecurity::text FROM pg_class"
                                 " WHERE oid = 'calllog.deliveries'::regclass",
                                 NULL, v, sizeof v),
                     "true");
    cr_expect_str_eq(admin_value("SELECT relrowsecurity::text FROM pg_class"
                                 " WHERE oid = 'calllog.schema_version'::regclass",
                                 NULL, v, sizeof v),
                     "true");
    cr_expect_str_eq(admin_value("SELECT count(*)::text FROM pg_policy WHERE polrelid ="
                                 " 'calllog.deliveries'::regclass",
                                 NULL, v, sizeof v),
                     "0");
    cr_expect_str_eq(admin_value("SELECT string_agg(version::text, ',' ORDER BY version) FROM "
                                 "calllog.schema_version",
                                 NULL, v, sizeof v),
                     "1,2");
    cr_expect_str_eq(admin_value("SELECT relrowsecurity::text FROM pg_class"
                                 " WHERE oid = 'calllog.followups'::regclass",
                                 NULL, v, sizeof v),
                     "true");
    cr_expect_str_eq(admin_value("SELECT count(*)::text FROM pg_trigger WHERE tgrelid ="
                                 " 'calllog.deliveries'::regclass AND NOT tgisinternal",
                                 NULL, v, sizeof v),
                     "1");
    cr_expect_str_eq(admin_value("SELECT count(*)::text FROM pg_indexes WHERE schemaname ="
                                 " 'calllog' AND tablename = 'deliveries'",
                                 NULL, v, sizeof v),
                     "5");

    /* Applying again keeps the data. */
    admin_exec("INSERT INTO calllog.deliveries (call_sid) VALUES ('CAkeep')");
    apply_migrations();
    cr_expect_str_eq(row_col("CAkeep", "state", v, sizeof v), "pending");

    /* The table refuses states and leases that make no sense. */
    PGresult *r = PQexec(admin, "INSERT INTO calllog.deliveries (call_sid, state)"
                                " VALUES ('CAbad', 'posted')");
    cr_expect_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
    PQclear(r);
    r = PQexec(admin, "INSERT INTO calllog.deliveries (call_sid, state)"
                      " VALUES ('CAbad', 'processing')");
    cr_expect_eq(PQresultStatus(r), PGRES_FATAL_ERROR, "processing without lease accepted");
    PQclear(r);
}

Test(ledger, migration_applies_twice_with_psql)
{
    admin_exec("DROP SCHEMA calllog CASCADE");
    glob_t g;
    pg_fixture_migrations(&g);
    char cmd[2048];
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            snprintf(cmd, sizeof cmd,
                     "psql -X -q -v ON_ERROR_STOP=1 -d \"$" URL_ENV "\" -f '%s' >/dev/null 2>&1",
                     g.gl_pathv[i]);
            cr_expect_eq(system(cmd), 0, "psql failed on round %d: %s", round, cmd);
        }
    }
    char v[64], want[16]; /* one version row per migration file */
    snprintf(want, sizeof want, "%zu", g.gl_pathc);
    globfree(&g);
    cr_expect_str_eq(
        admin_value("SELECT count(*)::text FROM calllog.schema_version", NULL, v, sizeof v), want);
}

/* Supabase has roles anon and authenticated; plain PostgreSQL does not. With them, the
 * migration revokes their privileges, and RLS hides rows even if someone grants them. */
Test(ledger, supabase_api_roles_cannot_read_calls)
{
    admin_exec("DO $$ BEGIN"
               " IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN"
               "   CREATE ROLE anon NOLOGIN; END IF;"
               " IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN"
               "   CREATE ROLE authenticated NOLOGIN; END IF; END $$");
    admin_exec("DROP SCHEMA calllog CASCADE");
    /* What a careless dashboard click could do before the migration runs. */
    admin_exec("CREATE SCHEMA calllog; GRANT USAGE ON SCHEMA calllog TO anon;"
               " ALTER DEFAULT PRIVILEGES IN SCHEMA calllog GRANT SELECT ON TABLES TO anon");
    apply_migrations();
    apply_migrations();
    admin_exec("INSERT INTO calllog.deliveries (call_sid, state) VALUES ('CAsecret', 'pending')");

    char v[64];
    cr_expect_str_eq(admin_value("SELECT has_schema_privilege('anon', 'calllog', 'USAGE')::text",
                                 NULL, v, sizeof v),
                     "false");
    cr_expect_str_eq(admin_value("SELECT has_table_privilege('anon', 'calllog.deliveries',"
                                 " 'SELECT')::text",
                                 NULL, v, sizeof v),
                     "false");
    cr_expect_str_eq(admin_value("SELECT count(*)::text FROM pg_default_acl d,"
                                 " aclexplode(d.defaclacl) a WHERE d.defaclnamespace ="
                                 " 'calllog'::regnamespace AND a.grantee = 'anon'::regrole",
                                 NULL, v, sizeof v),
                     "0");
    cr_expect_str_eq(admin_value("SELECT has_table_privilege('authenticated',"
                                 " 'calllog.deliveries', 'SELECT')::text",
                                 NULL, v, sizeof v),
                     "false");
    admin_exec("SET ROLE anon");
    PGresult *r = PQexec(admin, "SELECT * FROM calllog.deliveries");
    cr_expect_eq(PQresultStatus(r), PGRES_FATAL_ERROR, "anon read the ledger");
    cr_expect_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "42501");
    PQclear(r);
    admin_exec("RESET ROLE");

    /* Even granted explicitly, row level security with no policy shows nothing. */
    admin_exec("GRANT USAGE ON SCHEMA calllog TO anon;"
               " GRANT SELECT ON calllog.deliveries TO anon; SET ROLE anon");
    cr_expect_str_eq(
        admin_value("SELECT count(*)::text FROM calllog.deliveries", NULL, v, sizeof v), "0");
    admin_exec("RESET ROLE");
    cr_expect_str_eq(
        admin_value("SELECT count(*)::text FROM calllog.deliveries", NULL, v, sizeof v), "1");

    admin_exec("DROP SCHEMA calllog CASCADE; DROP OWNED BY anon, authenticated;"
               " DROP ROLE anon; DROP ROLE authenticated");
}

/* ---- connection and schema check --------------------------------------------------- */

Test(ledger, open_errors_never_show_the_password)
{
    static const char *const urls[] = {
        "postgresql://calllog:Sup3rSecretPw@127.0.0.1:1/nodb?connect_timeout=5",
        "postgresql://calllog:Sup3r%53ecretPw@127.0.0.1:1/nodb?connect_timeout=5",
        "postgresql://calllog:Sup3rSecretPw@[::1/nodb",
        "host=127.0.0.1 port=1 user=calllog password=Sup3rSecretPw dbname=x connect_timeout=5",
        "host=127.0.0.1 password=Sup3rSecretPw port=nonsense",
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        calllog_error err = {0};
        ledger *l = ledger_open(urls[i], &err);
        cr_expect_null(l, "case %zu connected", i);
        ledger_close(l);
        cr_expect_neq(err.message[0], '\0', "case %zu: empty error", i);
        cr_expect_null(strstr(err.message, "Sup3r"), "case %zu leaks the password: %s", i,
                       err.message);
        cr_expect_null(strchr(err.message, '\n'), "case %zu: multi-line error", i);
    }
    calllog_error err = {0};
    cr_expect_null(ledger_open("", &err));
    cr_expect_str_eq(err.message, "DATABASE_URL is empty");
    ledger_close(NULL);
}

Test(ledger, application_name_defaults_and_url_wins)
{
    char v[64];
    ledger *l = open_ledger();
    cr_expect_neq(atoi(admin_value("SELECT count(*) FROM pg_stat_activity WHERE"
                                   " application_name = 'calllog-worker'",
                                   NULL, v, sizeof v)),
                  0);
    ledger_close(l);

    char url[1200];
    const char *base = test_url();
    snprintf(url, sizeof url, "%s%capplication_name=ledger-own-name", base,
             strchr(base, '?') ? '&' : '?');
    l = open_on(url);
    cr_expect_str_eq(admin_value("SELECT count(*)::text FROM pg_stat_activity WHERE"
                                 " application_name = 'ledger-own-name'",
                                 NULL, v, sizeof v),
                     "1");
    ledger_close(l);
}

Test(ledger, check_schema_accepts_migrated_and_says_what_to_run)
{
    ledger *l = open_ledger();
    cr_expect_eq(ledger_check_schema(l), 0, "%s", ledger_error(l)->message);

    admin_exec("ALTER TABLE calllog.deliveries DROP COLUMN rd_task_id");
    cr_expect_eq(ledger_check_schema(l), CALLLOG_PERMANENT);
    cr_expect(strstr(ledger_error(l)->message, "lacks column(s) rd_task_id"), "%s",
              ledger_error(l)->message);

    admin_exec("DROP SCHEMA calllog CASCADE");
    apply_migrations();
    admin_exec("DELETE FROM calllog.schema_version");
    cr_expect_eq(ledger_check_schema(l), CALLLOG_PERMANENT);
    cr_expect(strstr(ledger_error(l)->message, "schema version 0 is older than 1"), "%s",
              ledger_error(l)->message);

    admin_exec("DROP SCHEMA calllog CASCADE");
    cr_expect_eq(ledger_check_schema(l), CALLLOG_PERMANENT);
    cr_expect(strstr(ledger_error(l)->message, "table calllog.deliveries is missing: run "
                                               "deploy/supabase/migrations/*.sql"),
              "%s", ledger_error(l)->message);
    cr_expect(strstr(ledger_error(l)->message, "supabase db push"), "%s", ledger_error(l)->message);

    /* A claim against the missing table fails with the same advice. */
    ledger_claim_result c;
    cr_expect_eq(ledger_claim(l, "CAnotable", "completed", "w1", LEASE_MS, NULL, &c), -1);
    cr_expect(strstr(ledger_error(l)->message, "42P01") &&
                  strstr(ledger_error(l)->message, "supabase db push"),
              "%s", ledger_error(l)->message);
    ledger_close(l);
}

/* ---- claims ---------------------------------------------------------------------- */

Test(ledger, claim_won_then_busy_for_another_owner)
{
    ledger *a = open_ledger(), *b = open_ledger();
    ledger_claim_result c = claim(a, "CAone", "worker-a");
    cr_expect_eq(c.status, LEDGER_CLAIM_WON);
    cr_expect_eq(c.attempts, 1);
    cr_expect_eq(c.post_started, 0);
    cr_expect_str_eq(c.state, "processing");
    cr_expect_str_eq(c.rd_deal_id, "");

    c = claim(b, "CAone", "worker-b");
    cr_expect_eq(c.status, LEDGER_CLAIM_BUSY);
    cr_expect_str_eq(c.state, "processing");
    cr_expect_eq(c.attempts, 1);

    /* Not even the holder re-wins a running lease by claiming again. */
    c = claim(a, "CAone", "worker-a");
    cr_expect_eq(c.status, LEDGER_CLAIM_BUSY);

    char v[128];
    cr_expect_str_eq(row_col("CAone", "lease_owner", v, sizeof v), "worker-a");
    cr_expect_str_eq(row_col("CAone", "call_status", v, sizeof v), "completed");
    cr_expect_str_eq(row_col("CAone", "event->>'call_sid'", v, sizeof v), "x");
    cr_expect_str_eq(
        row_col("CAone", "lease_expires_at > now() + interval '50 seconds'", v, sizeof v), "true");
    ledger_close(a);
    ledger_close(b);
}

/* How many round trips `l` made since `*mark`, which moves on to now. */
static long trips_since(const ledger *l, long *mark)
{
    long n = ledger_round_trips(l) - *mark;
    *mark = ledger_round_trips(l);
    return n;
}

Test(ledger, round_trips_of_a_delivered_call_and_of_its_duplicates)
{
    ledger *a = open_ledger(), *b = open_ledger();
    long ma = ledger_round_trips(a), mb = ledger_round_trips(b);
    cr_assert_eq(claim(a, "CAtrip", "worker-a").status, LEDGER_CLAIM_WON);
    cr_expect_eq(trips_since(a, &ma), 1, "won");
    cr_assert_eq(claim(b, "CAtrip", "worker-b").status, LEDGER_CLAIM_BUSY);
    cr_expect_eq(trips_since(b, &mb), 2, "busy: the claim, then why it took nothing");
    cr_expect_eq(ledger_mark_posting(a, "CAtrip", "worker-a", "deal-1", 60000), 0, "%s",
                 ledger_error(a)->message);
    ledger_delivery d = {"contact-1", "deal-1", "note-1", NULL, 0};
    cr_expect_eq(ledger_mark_delivered(a, "CAtrip", "worker-a", &d), 0, "%s",
                 ledger_error(a)->message);
    cr_expect_eq(trips_since(a, &ma), 2, "posting and delivered: one statement each");
    ledger_claim_result c = claim(b, "CAtrip", "worker-b");
    cr_expect_eq(c.status, LEDGER_CLAIM_FINISHED);
    cr_expect_str_eq(c.rd_deal_id, "deal-1");
    cr_expect_eq(trips_since(b, &mb), 2, "finished: the claim, then why it took nothing");
    cr_expect_eq(ledger_round_trips(NULL), 0);
    ledger_close(a);
    ledger_close(b);
}

Test(ledger, delivered_call_is_finished_for_everyone)
{
    ledger *a = open_ledger(), *b = open_ledger();
    char v[128];
    cr_assert_eq(claim(a, "CAdone", "worker-a").status, LEDGER_CLAIM_WON);
    cr_expect_eq(ledger_mark_posting(a, "CAdone", "worker-a", "deal-1", 60000), 0, "%s",
                 ledger_error(a)->message);
    ledger_delivery d = {"contact-1", "deal-1", "note-1", NULL, 0};
    cr_expect_eq(ledger_mark_delivered(a, "CAdone", "worker-a", &d), 0, "%s",
                 ledger_error(a)->message);

    ledger_claim_result c = claim(b, "CAdone", "worker-b");
    cr_expect_eq(c.status, LEDGER_CLAIM_FINISHED);
    cr_expect_str_eq(c.state, "delivered");
    cr_expect_str_eq(c.rd_deal_id, "deal-1");
    cr_expect_eq(c.attempts, 1);
    cr_expect_eq(c.post_started, 1);

    cr_expect_str_eq(row_col("CAdone", "rd_contact_id", v, sizeof v), "contact-1");
    cr_expect_str_eq(row_col("CAdone", "rd_note_id", v, sizeof v), "note-1");
    cr_expect_str_eq(row_col("CAdone", "rd_task_id", v, sizeof v), "(null)");
    cr_expect_str_eq(row_col("CAdone", "recovered", v, sizeof v), "false");
    cr_expect_str_eq(row_col("CAdone", "finished_at IS NOT NULL", v, sizeof v), "true");
    cr_expect_str_eq(row_col("CAdone", "lease_expires_at IS NULL", v, sizeof v), "true");
    cr_expect_str_eq(row_col("CAdone", "updated_at >= created_at", v, sizeof v), "true");

    /* Recording the same processor_outcome again (a repeat after a lost answer) is harmless. */
    cr_expect_eq(ledger_mark_delivered(a, "CAdone", "worker-a", &d), 0, "%s",
                 ledger_error(a)->message);
    /* But nobody else can change it any more. */
    cr_expect_eq(ledger_mark_retry(a, "CAdone", "worker-a", 1000, "late", 503), CALLLOG_LEASE_LOST);
    cr_expect_eq(ledger_mark_dead(a, "CAdone", NULL, "poison", "late", 0), CALLLOG_LEASE_LOST);
    cr_expect_str_eq(row_col("CAdone", "state", v, sizeof v), "delivered");
    ledger_close(a);
    ledger_close(b);
}

Test(ledger, skipped_and_dead_report_their_reason)
{
    ledger *a = open_ledger();
    char v[128];
    cr_assert_eq(claim(a, "CAskip", "worker-a").status, LEDGER_CLAIM_WON);
    cr_expect_eq(ledger_mark_skipped(a, "CAskip", "worker-a", "no_contact"), 0, "%s",
                 ledger_error(a)->message);
    ledger_claim_result c = claim(a, "CAskip", "worker-b");
    cr_expect_eq(c.status, LEDGER_CLAIM_FINISHED);
    cr_expect_str_eq(c.state, "skipped");
    cr_expect_str_eq(c.reason, "no_contact");

    cr_assert_eq(claim(a, "CAdead", "worker-a").status, LEDGER_CLAIM_WON);
    cr_expect_eq(ledger_mark_dead(a, "CAdead", "worker-a", "permanent_error", "422 bad deal", 422),
                 0, "%s", ledger_error(a)->message);
    c = claim(a, "CAdead", "worker-b");
    cr_expect_eq(c.status, LEDGER_CLAIM_DEAD);
    cr_expect_str_eq(c.state, "dead");
    cr_expect_str_eq(c.reason, "permanent_error");
    cr_expect_str_eq(row_col("CAdead", "last_error", v, sizeof v), "422 bad deal");
    cr_expect_str_eq(row_col("CAdead", "last_http_status", v, sizeof v), "422");
    cr_expect_str_eq(row_col("CAdead", "finished_at IS NOT NULL", v, sizeof v), "true");
    ledger_close(a);
}

Test(ledger, posting_needs_a_live_lease_and_renews_it)
{
    ledger *a = open_ledger();
    cr_assert_eq(claim(a, "CAslow", "worker-a").status, LEDGER_CLAIM_WON);
    /* Too slow (e.g. waiting for rate budget): the lease ran out before posting. */
    expire_lease("CAslow");
    cr_expect_eq(ledger_mark_posting(a, "CAslow", "worker-a", "deal-1", 60000), CALLLOG_LEASE_LOST);
    /* A fresh claim can post, and posting renews the lease. */
    cr_assert_eq(claim(a, "CAslow", "worker-a").status, LEDGER_CLAIM_WON);
    cr_expect_eq(ledger_mark_posting(a, "CAslow", "worker-a", "deal-1", 3600000), 0, "%s",
                 ledger_error(a)->message);
    ledger *b = open_ledger();
    cr_expect_eq(claim(b, "CAslow", "worker-b").status, LEDGER_CLAIM_BUSY);
    ledger_close(b);
    ledger_close(a);
}

Test(ledger, expired_lease_is_reclaimed_with_post_started)
{
    ledger *a = open_ledger(), *b = open_ledger();
    char v[128];
    cr_assert_eq(claim(a, "CAcrash", "worker-a").status, LEDGER_CLAIM_WON);
    cr_assert_eq(ledger_mark_posting(a, "CAcrash", "worker-a", "deal-7", 60000), 0);
    /* worker-a dies here, after posting and before recording it. */
    expire_lease("CAcrash");

    ledger_claim_result c = claim(b, "CAcrash", "worker-b");
    cr_expect_eq(c.status, LEDGER_CLAIM_WON);
    cr_expect_eq(c.attempts, 2);
    cr_expect_eq(c.post_started, 1);
    cr_expect_str_eq(c.rd_deal_id, "deal-7");
    cr_expect_str_eq(row_col("CAcrash", "lease_owner", v, sizeof v), "worker-b");

    /* The old holder, back from a pause, has lost every right to the row. */
    ledger_delivery d = {"contact-7", "deal-7", "note-old", NULL, 0};
    cr_expect_eq(ledger_mark_delivered(a, "CAcrash", "worker-a", &d), CALLLOG_LEASE_LOST);
    cr_expect_eq(ledger_mark_posting(a, "CAcrash", "worker-a", "deal-7", 60000),
                 CALLLOG_LEASE_LOST);

    ledger_delivery found = {"contact-7", "deal-7", "note-found", NULL, 1};
    cr_expect_eq(ledger_mark_delivered(b, "CAcrash", "worker-b", &found), 0, "%s",
                 ledger_error(b)->message);
    cr_expect_str_eq(row_col("CAcrash", "recovered", v, sizeof v), "true");
    cr_expect_str_eq(row_col("CAcrash", "rd_note_id", v, sizeof v), "note-found");
    ledger_close(a);
    ledger_close(b);
}

/* A deal that answered 404 is forgotten by its holder only: the next claim looks it up
 * again, and still looks for the marker. */
Test(ledger, forget_deal_clears_the_remembered_deal_for_its_holder_only)
{
    ledger *a = open_ledger();
    char v[128];
    cr_assert_eq(claim(a, "CAgone", "worker-a").status, LEDGER_CLAIM_WON);
    cr_assert_eq(ledger_mark_posting(a, "CAgone", "worker-a", "deal-gone", 60000), 0);

    cr_expect_eq(ledger_forget_deal(a, "CAgone", "worker-b"), CALLLOG_LEASE_LOST);
    cr_expect_str_eq(row_col("CAgone", "rd_deal_id", v, sizeof v), "deal-gone");

    cr_expect_eq(ledger_forget_deal(a, "CAgone", "worker-a"), 0, "%s", ledger_error(a)->message);
    cr_expect_str_eq(row_col("CAgone", "rd_deal_id", v, sizeof v), "(null)");
    cr_expect_str_eq(row_col("CAgone", "rd_post_started_at IS NOT NULL", v, sizeof v), "true");

    cr_assert_eq(ledger_mark_retry(a, "CAgone", "worker-a", 0, "404", 404), 0);
    ledger_claim_result c = claim(a, "CAgone", "worker-c");
    cr_expect_eq(c.status, LEDGER_CLAIM_WON);
    cr_expect_str_eq(c.rd_deal_id, "");
    cr_expect_eq(c.post_started, 1);

    /* Nothing to forget on a finished call, nor without a CallSid or a ledger. */
    ledger_delivery d = {"contact-1", "deal-new", "note-1", NULL, 0};
    cr_assert_eq(ledger_mark_delivered(a, "CAgone", "worker-c", &d), 0);
    cr_expect_eq(ledger_forget_deal(a, "CAgone", "worker-c"), CALLLOG_LEASE_LOST);
    cr_expect_str_eq(row_col("CAgone", "rd_deal_id", v, sizeof v), "deal-new");
    cr_expect_eq(ledger_forget_deal(a, "", "worker-c"), CALLLOG_LEASE_LOST);
    cr_expect_eq(ledger_forget_deal(NULL, "CAgone", "worker-c"), CALLLOG_INVALID);
    ledger_close(a);
}

Test(ledger, busy_claim_says_how_long_the_lease_still_runs)
{
    ledger *a = open_ledger(), *b = open_ledger();
    cr_assert_eq(claim(a, "CAheld", "worker-a").status, LEDGER_CLAIM_WON);
    ledger_claim_result c = claim(b, "CAheld", "worker-b");
    cr_expect_eq(c.status, LEDGER_CLAIM_BUSY);
    cr_expect(c.lease_left_ms > LEASE_MS - 10000 && c.lease_left_ms <= LEASE_MS, "%ld",
              c.lease_left_ms);
    ledger_close(a);
    ledger_close(b);
}

Test(ledger, renew_leases_extends_only_running_leases_of_their_owner)
{
    ledger *a = open_ledger(), *b = open_ledger();
    char v[128];
    cr_assert_eq(claim(a, "CAr1", "worker-a").status, LEDGER_CLAIM_WON);
    cr_assert_eq(claim(a, "CAr2", "worker-a\"q\\").status, LEDGER_CLAIM_WON); /* quoting */
    cr_assert_eq(claim(a, "CAr3", "worker-a").status, LEDGER_CLAIM_WON);
    cr_assert_eq(claim(a, "CAr4", "worker-a").status, LEDGER_CLAIM_WON);
    expire_lease("CAr3"); /* ran out: must stay expired, another worker may take it */
    ledger_delivery d = {"c", "d", "n", NULL, 0};
    cr_assert_eq(ledger_mark_delivered(a, "CAr4", "worker-a", &d), 0);
    const char *sids[] = {"CAr1", "CAr2", "CAr3", "CAr4", "CAr1", "CAnone"};
    const char *owners[] = {"worker-a", "worker-a\"q\\", "worker-a",
                            "worker-a", "worker-b",      "worker-a"};
    long n = ledger_renew_leases(b, sids, owners, 6, 3600000);
    cr_expect_eq(n, 2, "renewed %ld: %s", n, ledger_error(a)->message);
    cr_expect_str_eq(
        row_col("CAr1", "lease_expires_at > now() + interval '3000 seconds'", v, sizeof v), "true");
    cr_expect_str_eq(
        row_col("CAr2", "lease_expires_at > now() + interval '3000 seconds'", v, sizeof v), "true");
    cr_expect_str_eq(row_col("CAr3", "lease_expires_at < now()", v, sizeof v), "true");
    cr_expect_str_eq(row_col("CAr4", "state", v, sizeof v), "delivered");
    cr_expect_eq(ledger_renew_leases(b, NULL, NULL, 0, 1000), 0);
    ledger_close(a);
    ledger_close(b);
}

Test(ledger, unseen_finds_calls_without_a_row_in_one_statement)
{
    ledger *a = open_ledger();
    cr_assert_eq(claim(a, "CAu1", "worker-a").status, LEDGER_CLAIM_WON);
    cr_assert_eq(ledger_mark_skipped(a, "CAu3", NULL, "no_contact"), 0);
    const char *sids[] = {"CAu1", "CAu2", "CAu3", "CAu4", "CAu2"};
    unsigned char unseen[5];
    long n = ledger_unseen(a, sids, 5, unseen);
    cr_expect_eq(n, 3, "%ld: %s", n, ledger_error(a)->message);
    cr_expect_eq(unseen[0], 0);
    cr_expect_eq(unseen[1], 1);
    cr_expect_eq(unseen[2], 0);
    cr_expect_eq(unseen[3], 1);
    cr_expect_eq(unseen[4], 1);
    cr_expect_eq(ledger_unseen(a, NULL, 0, unseen), 0);
    ledger_close(a);
}

Test(ledger, marks_by_another_owner_change_nothing)
{
    ledger *a = open_ledger();
    char before[512], after[512];
    cr_assert_eq(claim(a, "CAowned", "worker-a").status, LEDGER_CLAIM_WON);
    const char *snapshot = "row_to_json(d)::jsonb - 'updated_at'";
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT (%s)::text FROM calllog.deliveries d WHERE call_sid = $1",
             snapshot);
    admin_value(sql, "CAowned", before, sizeof before);

    ledger_delivery d = {"c", "d", "n", "t", 0};
    cr_expect_eq(ledger_mark_posting(a, "CAowned", "intruder", "deal-x", 60000),
                 CALLLOG_LEASE_LOST);
    cr_expect_eq(ledger_mark_delivered(a, "CAowned", "intruder", &d), CALLLOG_LEASE_LOST);
    cr_expect_eq(ledger_mark_skipped(a, "CAowned", "intruder", "no_contact"), CALLLOG_LEASE_LOST);
    cr_expect_eq(ledger_mark_retry(a, "CAowned", "intruder", 5000, "503", 503), CALLLOG_LEASE_LOST);
    cr_expect_eq(ledger_mark_dead(a, "CAowned", "intruder", "permanent_error", "400", 400),
                 CALLLOG_LEASE_LOST);
    admin_value(sql, "CAowned", after, sizeof after);
    cr_expect_str_eq(after, before);

    /* No row at all: nothing to mark either. */
    cr_expect_eq(ledger_mark_retry(a, "CAnobody", "worker-a", 5000, "x", 0), CALLLOG_LEASE_LOST);
    cr_expect_eq(ledger_mark_posting(a, "CAnobody", "worker-a", "d", 60000), CALLLOG_LEASE_LOST);
    cr_expect_str_eq(row_col("CAnobody", "state", after, sizeof after), "(none)");
    ledger_close(a);
}

Test(ledger, retry_wait_is_claimable_again)
{
    ledger *a = open_ledger(), *b = open_ledger();
    char v[128];
    cr_assert_eq(claim(a, "CAretry", "worker-a").status, LEDGER_CLAIM_WON);
    cr_expect_eq(ledger_mark_retry(a, "CAretry", "worker-a", 30000, "RD answered 503", 503), 0,
                 "%s", ledger_error(a)->message);
    cr_expect_str_eq(row_col("CAretry", "state", v, sizeof v), "retry_wait");
    cr_expect_str_eq(
        row_col("CAretry", "next_attempt_at > now() + interval '20 seconds'", v, sizeof v), "true");
    cr_expect_str_eq(row_col("CAretry", "lease_expires_at IS NULL", v, sizeof v), "true");
    cr_expect_str_eq(row_col("CAretry", "last_http_status", v, sizeof v), "503");
    cr_expect_str_eq(row_col("CAretry", "finished_at IS NULL", v, sizeof v), "true");

    ledger_claim_result c = claim(b, "CAretry", "worker-b");
    cr_expect_eq(c.status, LEDGER_CLAIM_WON);
    cr_expect_eq(c.attempts, 2);
    cr_expect_eq(c.post_started, 0);
    cr_expect_str_eq(row_col("CAretry", "next_attempt_at IS NULL", v, sizeof v), "true");
    /* worker-a's stale retry record cannot undo worker-b's lease. */
    cr_expect_eq(ledger_mark_retry(a, "CAretry", "worker-a", 1, "again", 0), CALLLOG_LEASE_LOST);
    cr_expect_str_eq(row_col("CAretry", "lease_owner", v, sizeof v), "worker-b");
    ledger_close(a);
    ledger_close(b);
}

Test(ledger, ownerless_marks_for_poison_entries)
{
    ledger *a = open_ledger();
    char v[128];
    /* Never claimed (malformed event): the dead letter is still recorded. */
    cr_expect_eq(ledger_mark_dead(a, "CApoison", NULL, "malformed_event", "bad json", 0), 0, "%s",
                 ledger_error(a)->message);
    cr_expect_str_eq(row_col("CApoison", "state", v, sizeof v), "dead");
    cr_expect_str_eq(row_col("CApoison", "last_http_status", v, sizeof v), "(null)");
    cr_expect_eq(claim(a, "CApoison", "worker-a").status, LEDGER_CLAIM_DEAD);

    /* Whatever the lease: a row being processed can be buried by a poison check. */
    cr_assert_eq(claim(a, "CAstuck", "worker-a").status, LEDGER_CLAIM_WON);
    cr_expect_eq(ledger_mark_dead(a, "CAstuck", NULL, "poison", "too many deliveries", 0), 0, "%s",
                 ledger_error(a)->message);
    cr_expect_str_eq(row_col("CAstuck", "state", v, sizeof v), "dead");
    ledger_delivery d = {"c", "d", "n", NULL, 0};
    cr_expect_eq(ledger_mark_delivered(a, "CAstuck", "worker-a", &d), CALLLOG_LEASE_LOST);

    /* An entry without CallSid has no row to record anything in. */
    cr_expect_eq(ledger_mark_dead(a, "", NULL, "malformed_event", "no CallSid", 0),
                 CALLLOG_LEASE_LOST);
    ledger_close(a);
}

Test(ledger, reset_makes_a_dead_call_claimable)
{
    ledger *a = open_ledger();
    char v[128];
    cr_assert_eq(claim(a, "CAzombie", "worker-a").status, LEDGER_CLAIM_WON);
    cr_assert_eq(ledger_mark_posting(a, "CAzombie", "worker-a", "deal-9", 60000), 0);
    cr_assert_eq(ledger_mark_dead(a, "CAzombie", "worker-a", "attempts_exhausted", "timeout", 0),
                 0);

    cr_expect_eq(ledger_reset(a, "CAzombie"), 0, "%s", ledger_error(a)->message);
    cr_expect_str_eq(row_col("CAzombie", "state", v, sizeof v), "pending");
    cr_expect_str_eq(row_col("CAzombie", "attempts", v, sizeof v), "0");
    cr_expect_str_eq(row_col("CAzombie", "finished_at IS NULL AND reason IS NULL", v, sizeof v),
                     "true");

    ledger_claim_result c = claim(a, "CAzombie", "worker-b");
    cr_expect_eq(c.status, LEDGER_CLAIM_WON);
    cr_expect_eq(c.attempts, 1);
    cr_expect_eq(c.post_started, 1, "an earlier attempt may have posted: look for the marker");
    cr_expect_str_eq(c.rd_deal_id, "deal-9");

    /* A stuck processing row can be reset too; its holder then loses it. */
    cr_expect_eq(ledger_reset(a, "CAzombie"), 0, "%s", ledger_error(a)->message);
    cr_expect_eq(ledger_mark_skipped(a, "CAzombie", "worker-b", "x"), CALLLOG_LEASE_LOST);

    /* Delivered calls and unknown calls are not reset. */
    cr_expect_eq(ledger_reset(a, "CAunknown"), 1);
    cr_assert_eq(claim(a, "CAfine", "worker-a").status, LEDGER_CLAIM_WON);
    ledger_delivery d = {"c", "d", "n", NULL, 0};
    cr_assert_eq(ledger_mark_delivered(a, "CAfine", "worker-a", &d), 0);
    cr_expect_eq(ledger_reset(a, "CAfine"), 1);
    cr_expect_str_eq(row_col("CAfine", "state", v, sizeof v), "delivered");
    ledger_close(a);
}

Test(ledger, state_counts_lists_every_state)
{
    ledger *a = open_ledger();
    char out[256];
    cr_expect_eq(ledger_state_counts(a, out, sizeof out), 0, "%s", ledger_error(a)->message);
    cr_expect_str_eq(out, "pending=0 processing=0 retry_wait=0 delivered=0 skipped=0 dead=0");

    cr_assert_eq(claim(a, "CA1", "w").status, LEDGER_CLAIM_WON);
    cr_assert_eq(claim(a, "CA2", "w").status, LEDGER_CLAIM_WON);
    cr_assert_eq(claim(a, "CA3", "w").status, LEDGER_CLAIM_WON);
    cr_assert_eq(ledger_mark_skipped(a, "CA2", "w", "no_contact"), 0);
    cr_assert_eq(ledger_mark_dead(a, "CA3", "w", "permanent_error", "x", 400), 0);
    cr_assert_eq(ledger_mark_dead(a, "CA4", NULL, "malformed_event", "x", 0), 0);
    cr_expect_eq(ledger_state_counts(a, out, sizeof out), 0, "%s", ledger_error(a)->message);
    cr_expect_str_eq(out, "pending=0 processing=1 retry_wait=0 delivered=0 skipped=1 dead=2");

    char small[20];
    cr_expect_eq(ledger_state_counts(a, small, sizeof small), -1);
    cr_expect(strstr(ledger_error(a)->message, "too small"), "%s", ledger_error(a)->message);
    ledger_close(a);
}

/* ---- two workers racing ------------------------------------------------------------ */

typedef struct racer {
    ledger *l;
    const char *owner;
    pthread_barrier_t *go;
    ledger_claim_status got[RACE_ROUNDS];
    int attempts[RACE_ROUNDS];
    int failures;
    char err[512];
} racer;

/* The CallSid of race round `i`. */
static void race_sid(int i, char *out, size_t outlen)
{
    snprintf(out, outlen, "CArace%04d", i);
}

/* One side of the race: waits for the start of each round, claims, waits for its end. */
static void *race(void *arg)
{
    racer *r = arg;
    for (int i = 0; i < RACE_ROUNDS; i++) {
        char sid[32];
        ledger_claim_result c;
        race_sid(i, sid, sizeof sid);
        pthread_barrier_wait(r->go);
        if (ledger_claim(r->l, sid, "completed", r->owner, LEASE_MS, NULL, &c) != 0) {
            snprintf(r->err, sizeof r->err, "%s", ledger_error(r->l)->message);
            r->failures++;
            c.status = LEDGER_CLAIM_FINISHED; /* counted as neither won nor busy */
            c.attempts = -1;
        }
        r->got[i] = c.status;
        r->attempts[i] = c.attempts;
        pthread_barrier_wait(r->go);
    }
    return NULL;
}

/* Prepares the row of round `i`: none (insert race), retry_wait, or an expired lease
 * (update races). Returns the attempts the winner must report. */
static int race_prepare(int i)
{
    char sid[32], v[16];
    race_sid(i, sid, sizeof sid);
    if (i % 3 == 1)
        admin_value("INSERT INTO calllog.deliveries (call_sid, state, attempts)"
                    " VALUES ($1, 'retry_wait', 1) RETURNING 1",
                    sid, v, sizeof v);
    else if (i % 3 == 2)
        admin_value("INSERT INTO calllog.deliveries (call_sid, state, attempts, lease_owner,"
                    " lease_expires_at) VALUES ($1, 'processing', 1, 'dead-worker',"
                    " now() - interval '1 minute') RETURNING 1",
                    sid, v, sizeof v);
    return i % 3 == 0 ? 1 : 2;
}

Test(ledger, two_connections_race_one_winner_every_round)
{
    pthread_barrier_t go;
    cr_assert_eq(pthread_barrier_init(&go, NULL, 3), 0);
    racer a = {.l = open_ledger(), .owner = "racer-a", .go = &go};
    racer b = {.l = open_ledger(), .owner = "racer-b", .go = &go};
    int want[RACE_ROUNDS];
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, race, &a), 0);
    cr_assert_eq(pthread_create(&tb, NULL, race, &b), 0);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        want[i] = race_prepare(i);
        pthread_barrier_wait(&go); /* start */
        pthread_barrier_wait(&go); /* both answered */
    }
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&go);
    cr_assert_eq(a.failures + b.failures, 0, "claims failed: %s %s", a.err, b.err);

    int wins_a = 0, wins_b = 0;
    for (int i = 0; i < RACE_ROUNDS; i++) {
        int won_a = a.got[i] == LEDGER_CLAIM_WON, won_b = b.got[i] == LEDGER_CLAIM_WON;
        cr_expect_eq(won_a + won_b, 1, "round %d: a=%d b=%d", i, a.got[i], b.got[i]);
        cr_expect_eq(won_a ? b.got[i] : a.got[i], LEDGER_CLAIM_BUSY, "round %d: loser not busy", i);
        cr_expect_eq(won_a ? a.attempts[i] : b.attempts[i], want[i], "round %d attempts", i);
        char sid[32], owner[64];
        race_sid(i, sid, sizeof sid);
        cr_expect_str_eq(row_col(sid, "lease_owner", owner, sizeof owner),
                         won_a ? "racer-a" : "racer-b", "round %d: row owner", i);
        wins_a += won_a;
        wins_b += won_b;
    }
    cr_log_info("race: racer-a won %d rounds, racer-b %d", wins_a, wins_b);
    ledger_close(a.l);
    ledger_close(b.l);
}

/* ---- the wire: a proxy between the ledger and PostgreSQL --------------------------- */

/* Bytes read from one side and not yet passed on as whole messages. */
typedef struct bytes {
    char *p;
    size_t len, cap;
} bytes;

typedef struct relay {
    int cfd, sfd;  /* client (the ledger) and server sockets; -1 when closed */
    int started;   /* the client's untyped first message went through */
    int drop_at_z; /* lose the server's answer, then the connection, at ReadyForQuery */
    int mute;      /* swallow everything the server says */
    bytes c2s, s2c;
} relay;

#define MAX_RELAYS 16
#define CANCEL_REQUEST_CODE 80877102

typedef struct proxy {
    int lfd, port;
    struct sockaddr_storage up;
    socklen_t uplen;
    pthread_t thread;
    pthread_mutex_t mu;
    relay r[MAX_RELAYS];
    /* requests from the test (under mu; the proxy clears each once done) */
    int stop, kill_all, mute_all;
    char drop_marker[64]; /* drop the connection after the statement containing this */
    /* what went through (under mu) */
    int parses, named_parses, simple_queries, cancels, connections;
} proxy;

/* Appends `n` bytes to `b`. */
static void bytes_add(bytes *b, const char *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* Writes all of `p`; returns -1 when the peer is gone. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Big-endian 32-bit integer at `p`. */
static uint32_t be32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static void relay_close(relay *r)
{
    if (r->cfd >= 0)
        close(r->cfd);
    if (r->sfd >= 0)
        close(r->sfd);
    r->cfd = r->sfd = -1;
    free(r->c2s.p);
    free(r->s2c.p);
    memset(&r->c2s, 0, sizeof r->c2s);
    memset(&r->s2c, 0, sizeof r->s2c);
}

/* Length of the next whole message in `b` (untyped when `untyped`), 0 if incomplete. */
static size_t next_message(const bytes *b, int untyped)
{
    size_t head = untyped ? 4 : 5;
    if (b->len < head)
        return 0;
    size_t n = (untyped ? 0 : 1) + be32(b->p + (untyped ? 0 : 1));
    return n >= head - 1 && b->len >= n ? n : 0;
}

/* Notes what the ledger sends (Parse names, simple queries, cancels). */
static void inspect_client(proxy *px, relay *r, const char *m, size_t n, int untyped)
{
    pthread_mutex_lock(&px->mu);
    if (untyped && n >= 8 && be32(m + 4) == CANCEL_REQUEST_CODE)
        px->cancels++;
    if (!untyped && m[0] == 'Q')
        px->simple_queries++;
    if (!untyped && m[0] == 'P' && n > 6) {
        const char *name = m + 5;
        const char *query = name + strnlen(name, n - 5) + 1;
        px->parses++;
        px->named_parses += name[0] != '\0';
        if (px->drop_marker[0] && query < m + n && strstr(query, px->drop_marker)) {
            r->drop_at_z = 1;
            px->drop_marker[0] = '\0';
        }
    }
    pthread_mutex_unlock(&px->mu);
}

/* Passes whole messages from the ledger to the server. Returns -1 to close the relay. */
static int pump_client(proxy *px, relay *r)
{
    size_t n;
    while ((n = next_message(&r->c2s, !r->started)) > 0) {
        inspect_client(px, r, r->c2s.p, n, !r->started);
        r->started = 1;
        if (write_all(r->sfd, r->c2s.p, n) != 0)
            return -1;
        memmove(r->c2s.p, r->c2s.p + n, r->c2s.len - n);
        r->c2s.len -= n;
    }
    return 0;
}

/* Passes whole messages from the server to the ledger, unless muted or dropping.
 * Returns -1 to close the relay. */
static int pump_server(relay *r)
{
    size_t n;
    while ((n = next_message(&r->s2c, 0)) > 0) {
        char type = r->s2c.p[0];
        if (r->drop_at_z && type == 'Z')
            return -1; /* the statement committed; its answer dies with the connection */
        if (!r->drop_at_z && !r->mute && write_all(r->cfd, r->s2c.p, n) != 0)
            return -1;
        memmove(r->s2c.p, r->s2c.p + n, r->s2c.len - n);
        r->s2c.len -= n;
    }
    return 0;
}

/* Reads what `fd` has into `b`. Returns -1 at EOF or error. */
static int read_into(int fd, bytes *b)
{
    char buf[8192];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0)
        return -1;
    bytes_add(b, buf, (size_t)n);
    return 0;
}

/* Accepts a ledger connection and connects it to the server. */
static void proxy_accept(proxy *px)
{
    int cfd = accept(px->lfd, NULL, NULL);
    if (cfd < 0)
        return;
    int sfd = socket(px->up.ss_family, SOCK_STREAM, 0);
    if (sfd < 0 || connect(sfd, (struct sockaddr *)&px->up, px->uplen) != 0) {
        close(cfd);
        if (sfd >= 0)
            close(sfd);
        return;
    }
    int one = 1; /* messages go one by one: no Nagle delay */
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (int i = 0; i < MAX_RELAYS; i++) {
        if (px->r[i].cfd < 0) {
            memset(&px->r[i], 0, sizeof px->r[i]);
            px->r[i].cfd = cfd;
            px->r[i].sfd = sfd;
            pthread_mutex_lock(&px->mu);
            px->connections++;
            pthread_mutex_unlock(&px->mu);
            return;
        }
    }
    close(cfd);
    close(sfd);
}

/* Carries out the test's requests. Returns 1 when asked to stop. */
static int proxy_requests(proxy *px)
{
    pthread_mutex_lock(&px->mu);
    int stop = px->stop;
    for (int i = 0; i < MAX_RELAYS; i++) {
        if (px->r[i].cfd < 0)
            continue;
        if (px->kill_all || stop)
            relay_close(&px->r[i]);
        else if (px->mute_all)
            px->r[i].mute = 1;
    }
    px->kill_all = px->mute_all = 0;
    pthread_mutex_unlock(&px->mu);
    return stop;
}

/* The proxy's loop: accept, relay, obey. */
static void *proxy_main(void *arg)
{
    proxy *px = arg;
    while (!proxy_requests(px)) {
        struct pollfd p[1 + 2 * MAX_RELAYS];
        int np = 0;
        p[np++] = (struct pollfd){.fd = px->lfd, .events = POLLIN};
        for (int i = 0; i < MAX_RELAYS; i++) {
            p[np++] = (struct pollfd){.fd = px->r[i].cfd, .events = POLLIN};
            p[np++] = (struct pollfd){.fd = px->r[i].sfd, .events = POLLIN};
        }
        if (poll(p, (nfds_t)np, 10) <= 0)
            continue;
        if (p[0].revents & POLLIN)
            proxy_accept(px);
        for (int i = 0; i < MAX_RELAYS; i++) {
            relay *r = &px->r[i];
            short cev = p[1 + 2 * i].revents, sev = p[2 + 2 * i].revents;
            if (r->cfd < 0 || (!cev && !sev))
                continue;
            int bad = 0;
            if (cev)
                bad = read_into(r->cfd, &r->c2s) != 0 || pump_client(px, r) != 0;
            if (!bad && sev)
                bad = read_into(r->sfd, &r->s2c) != 0 || pump_server(r) != 0;
            if (bad)
                relay_close(r);
        }
    }
    return NULL;
}

/* Sets a request flag and waits until the proxy has carried it out. */
static void proxy_request(proxy *px, int *flag)
{
    pthread_mutex_lock(&px->mu);
    *flag = 1;
    pthread_mutex_unlock(&px->mu);
    for (;;) {
        pthread_mutex_lock(&px->mu);
        int pending = *flag;
        pthread_mutex_unlock(&px->mu);
        if (!pending)
            return;
        usleep(1000);
    }
}

/* Starts a proxy to the test server and writes the conninfo that goes through it. */
static void proxy_start(proxy *px, char *conninfo, size_t len)
{
    memset(px, 0, sizeof *px);
    for (int i = 0; i < MAX_RELAYS; i++)
        px->r[i].cfd = px->r[i].sfd = -1;
    pthread_mutex_init(&px->mu, NULL);

    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(test_url(), &perr);
    cr_assert(opts, "cannot parse " URL_ENV ": %s", perr ? perr : "?");
    const char *host = "127.0.0.1", *port = "5432", *db = NULL, *user = NULL, *pw = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !o->val[0])
            continue;
        if (!strcmp(o->keyword, "host") || !strcmp(o->keyword, "hostaddr"))
            host = o->val;
        else if (!strcmp(o->keyword, "port"))
            port = o->val;
        else if (!strcmp(o->keyword, "dbname"))
            db = o->val;
        else if (!strcmp(o->keyword, "user"))
            user = o->val;
        else if (!strcmp(o->keyword, "password"))
            pw = o->val;
    }
    cr_assert(host[0] != '/', "the proxy needs a TCP " URL_ENV ", not a socket directory");
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    cr_assert(getaddrinfo(host, port, &hints, &ai) == 0 && ai, "cannot resolve %s", host);
    memcpy(&px->up, ai->ai_addr, ai->ai_addrlen);
    px->uplen = ai->ai_addrlen;
    freeaddrinfo(ai);

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    px->lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(px->lfd >= 0 && bind(px->lfd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
              listen(px->lfd, 16) == 0 && getsockname(px->lfd, (struct sockaddr *)&sa, &sl) == 0);
    px->port = ntohs(sa.sin_port);
    snprintf(conninfo, len,
             "host=127.0.0.1 port=%d dbname='%s' user='%s' password='%s' sslmode=disable"
             " gssencmode=disable",
             px->port, db ? db : "", user ? user : "", pw ? pw : "");
    PQconninfoFree(opts);
    cr_assert_eq(pthread_create(&px->thread, NULL, proxy_main, px), 0);
}

static void proxy_stop(proxy *px)
{
    pthread_mutex_lock(&px->mu);
    px->stop = 1;
    pthread_mutex_unlock(&px->mu);
    pthread_join(px->thread, NULL);
    close(px->lfd);
    pthread_mutex_destroy(&px->mu);
}

/* Reads one of the proxy's counters. */
static int proxy_count(proxy *px, const int *counter)
{
    pthread_mutex_lock(&px->mu);
    int v = *counter;
    pthread_mutex_unlock(&px->mu);
    return v;
}

/* Arms the proxy to lose the answer to the next statement containing `marker`. */
static void proxy_drop_after(proxy *px, const char *marker)
{
    pthread_mutex_lock(&px->mu);
    snprintf(px->drop_marker, sizeof px->drop_marker, "%s", marker);
    pthread_mutex_unlock(&px->mu);
}

Test(ledger, only_unnamed_statements_and_no_session_state)
{
    proxy px;
    char ci[512], out[256];
    proxy_start(&px, ci, sizeof ci);
    ledger *l = open_on(ci);
    cr_expect_eq(ledger_check_schema(l), 0, "%s", ledger_error(l)->message);
    cr_assert_eq(claim(l, "CAwire", "w").status, LEDGER_CLAIM_WON);
    cr_expect_eq(claim(l, "CAwire", "other").status, LEDGER_CLAIM_BUSY);
    cr_expect_eq(ledger_mark_posting(l, "CAwire", "w", "deal", 60000), 0);
    cr_expect_eq(ledger_mark_retry(l, "CAwire", "w", 10, "x", 500), 0);
    cr_expect_eq(claim(l, "CAwire", "w").status, LEDGER_CLAIM_WON);
    ledger_delivery d = {"c", "deal", "n", "t", 0};
    cr_expect_eq(ledger_mark_delivered(l, "CAwire", "w", &d), 0);
    cr_expect_eq(ledger_mark_skipped(l, "CAwire2", NULL, "no_contact"), 0);
    cr_expect_eq(ledger_mark_dead(l, "CAwire3", NULL, "poison", "x", 0), 0);
    cr_expect_eq(ledger_reset(l, "CAwire3"), 0);
    cr_expect_eq(ledger_state_counts(l, out, sizeof out), 0);
    ledger_close(l);

    cr_expect_gt(proxy_count(&px, &px.parses), 10, "the proxy saw no statements");
    cr_expect_eq(proxy_count(&px, &px.named_parses), 0, "named prepared statement sent");
    cr_expect_eq(proxy_count(&px, &px.simple_queries), 0, "simple query (SET?) sent");
    cr_expect_eq(proxy_count(&px, &px.connections), 1);
    proxy_stop(&px);
}

Test(ledger, reconnects_after_losing_the_connection)
{
    proxy px;
    char ci[512], v[64];
    proxy_start(&px, ci, sizeof ci);
    ledger *l = open_on(ci);
    cr_assert_eq(claim(l, "CAcut", "w").status, LEDGER_CLAIM_WON);

    proxy_request(&px, &px.kill_all); /* server restart, pooler failover, cable cut */
    cr_expect_eq(ledger_mark_posting(l, "CAcut", "w", "deal-3", 60000), 0, "%s",
                 ledger_error(l)->message);
    cr_expect_str_eq(row_col("CAcut", "rd_deal_id", v, sizeof v), "deal-3");

    proxy_request(&px, &px.kill_all);
    cr_expect_eq(claim(l, "CAcut2", "w").status, LEDGER_CLAIM_WON);
    cr_expect_eq(proxy_count(&px, &px.connections), 3);
    ledger_close(l);
    proxy_stop(&px);
}

Test(ledger, claim_whose_answer_was_lost_is_still_won_once)
{
    proxy px;
    char ci[512], v[64];
    proxy_start(&px, ci, sizeof ci);
    ledger *l = open_on(ci);

    /* The claim commits, then the connection dies before its answer arrives. */
    proxy_drop_after(&px, "INSERT INTO calllog.deliveries");
    ledger_claim_result c = claim(l, "CAlost", "w");
    cr_expect_eq(c.status, LEDGER_CLAIM_WON);
    cr_expect_eq(c.attempts, 1, "the repeat must not count a second claim");
    cr_expect_eq(proxy_count(&px, &px.connections), 2, "the drop did not happen");
    cr_expect_str_eq(row_col("CAlost", "attempts", v, sizeof v), "1");
    cr_expect_str_eq(row_col("CAlost", "lease_owner", v, sizeof v), "w");

    /* Same for recording the delivery. */
    proxy_drop_after(&px, "UPDATE calllog.deliveries");
    ledger_delivery d = {"c", "deal", "n", NULL, 0};
    cr_expect_eq(ledger_mark_delivered(l, "CAlost", "w", &d), 0, "%s", ledger_error(l)->message);
    cr_expect_eq(proxy_count(&px, &px.connections), 3, "the drop did not happen");
    cr_expect_str_eq(row_col("CAlost", "state", v, sizeof v), "delivered");

    /* And for a retry record. */
    cr_assert_eq(claim(l, "CAlost2", "w").status, LEDGER_CLAIM_WON);
    proxy_drop_after(&px, "UPDATE calllog.deliveries");
    cr_expect_eq(ledger_mark_retry(l, "CAlost2", "w", 1000, "503", 503), 0, "%s",
                 ledger_error(l)->message);
    cr_expect_str_eq(row_col("CAlost2", "state", v, sizeof v), "retry_wait");
    ledger_close(l);
    proxy_stop(&px);
}

/* Takes the statement timeout plus the cancel grace (about 12 s): the server stops
 * answering, the ledger cancels, gives up on the connection, reconnects and repeats. */
Test(ledger, server_that_stops_answering_is_given_up, .timeout = 120)
{
    proxy px;
    char ci[512];
    proxy_start(&px, ci, sizeof ci);
    ledger *l = open_on(ci);
    proxy_request(&px, &px.mute_all);

    ledger_claim_result c = claim(l, "CAhang", "w");
    cr_expect_eq(c.status, LEDGER_CLAIM_WON, "the repeat sees its own committed lease");
    cr_expect_eq(c.attempts, 1);
    cr_expect_geq(proxy_count(&px, &px.cancels), 1, "no cancel request was sent");
    cr_expect_eq(proxy_count(&px, &px.connections), 3, "main, cancel, and the new connection");
    ledger_close(l);
    proxy_stop(&px);
}
