/* pg_fixture — a throwaway PostgreSQL database, migrated, for one criterion test.
 *
 * The test command (tests/run.sh) starts a real PostgreSQL and exports
 * CALLLOG_TEST_DATABASE_URL. The ledger's schema name (`calllog`) is fixed, so tests that
 * must not share rows get a database of their own rather than a schema: pg_fixture_open
 * creates `calllog_unit_<pid>_<n>` on that server, applies deploy/supabase/migrations/
 * to it and keeps an admin connection; pg_fixture_close drops it (WITH (FORCE)). Test
 * processes that criterion runs in parallel therefore never see each other, and no lock
 * serializes them. Without the variable the test fails saying how to get a server: it
 * never passes by skipping. Part of calllog_testlib (tests/lib/); every function fails
 * the running criterion test on error. */
#ifndef CALLLOG_TEST_PG_FIXTURE_H
#define CALLLOG_TEST_PG_FIXTURE_H

#include <glob.h>
#include <libpq-fe.h>
#include <stddef.h>

#define PG_FIXTURE_URL_ENV "CALLLOG_TEST_DATABASE_URL"

typedef struct pg_fixture {
    PGconn *admin;   /* connection to the throwaway database (the fixture owns it) */
    char dbname[64]; /* calllog_unit_<pid>_<n> */
    char host[256];  /* the server's TCP host, from the URL */
    char port[16];   /* its port */
    char user[128];  /* "" when the URL names none */
    char password[128];
    char url[1024]; /* conninfo of the throwaway database */
} pg_fixture;

/* Creates, migrates and connects to a fresh database on the test server. */
void pg_fixture_open(pg_fixture *f);

/* Closes the admin connection and drops the database. Safe on a fixture that was never
 * opened (all zero) or is closed already. */
void pg_fixture_close(pg_fixture *f);

/* Fills `g` with the paths of deploy/supabase/migrations/ (the .sql files) in name order (what
 * `supabase db push` and psql loops apply); the caller globfree()s it. */
void pg_fixture_migrations(glob_t *g);

/* Applies every migration of deploy/supabase/migrations/ once, in name order, on `c`. */
void pg_fixture_migrate(PGconn *c);

/* Runs `sql` (one or more statements) on the admin connection. */
void pg_fixture_exec(pg_fixture *f, const char *sql);

/* First column of the first row of `sql` with $1 = `arg` (may be NULL) as text into
 * `out`; "(null)" for SQL NULL, "(none)" when there is no row. Returns `out`. */
char *pg_fixture_value(pg_fixture *f, const char *sql, const char *arg, char *out, size_t outlen);

/* The same two on any connection `c` (a suite's own, e.g. test_ledger's shared schema). */
void pg_fixture_conn_exec(PGconn *c, const char *sql);
char *pg_fixture_conn_value(PGconn *c, const char *sql, const char *arg, char *out, size_t outlen);

/* Writes a conninfo for the throwaway database reached at 127.0.0.1:`port` (a pg_proxy
 * in front of the server), or at the server itself when `port` is 0. */
void pg_fixture_conninfo(const pg_fixture *f, int port, char *out, size_t outlen);

#endif
