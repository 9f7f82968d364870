/* pg_fixture — throwaway, migrated PostgreSQL databases for unit tests (see pg_fixture.h). */
#include "tests/lib/pg_fixture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <glob.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Swallows the server's NOTICEs ("schema already exists, skipping"). */
static void pg_fixture_quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* The test server's URL; fails the test when the variable is not set. */
static const char *pg_fixture_url(void)
{
    const char *u = getenv(PG_FIXTURE_URL_ENV);
    cr_assert(u && u[0], PG_FIXTURE_URL_ENV
              " is not set: these tests need a real PostgreSQL. Run `bash tests/run.sh`, or "
              "`. tests/lib/services.sh && services_start` and run them again.");
    return u;
}

/* Copies host, port, user and password of `url` into `f` (TCP only: a pg_proxy needs
 * an address). */
static void pg_fixture_parse(pg_fixture *f, const char *url)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &perr);
    cr_assert(opts, "cannot parse " PG_FIXTURE_URL_ENV ": %s", perr ? perr : "out of memory");
    snprintf(f->host, sizeof f->host, "127.0.0.1");
    snprintf(f->port, sizeof f->port, "5432");
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !o->val[0])
            continue;
        if (!strcmp(o->keyword, "host") || !strcmp(o->keyword, "hostaddr"))
            snprintf(f->host, sizeof f->host, "%s", o->val);
        else if (!strcmp(o->keyword, "port"))
            snprintf(f->port, sizeof f->port, "%s", o->val);
        else if (!strcmp(o->keyword, "user"))
            snprintf(f->user, sizeof f->user, "%s", o->val);
        else if (!strcmp(o->keyword, "password"))
            snprintf(f->password, sizeof f->password, "%s", o->val);
    }
    PQconninfoFree(opts);
    cr_assert(f->host[0] != '/',
              "the fixture needs a TCP " PG_FIXTURE_URL_ENV ", not a socket directory");
}

/* Checks a new connection `c` (fails the test when it did not connect) and quiets it. */
static PGconn *pg_fixture_checked(PGconn *c)
{
    cr_assert(c && PQstatus(c) == CONNECTION_OK, "cannot connect to the test PostgreSQL: %s",
              c ? PQerrorMessage(c) : "out of memory");
    PQsetNoticeProcessor(c, pg_fixture_quiet, NULL);
    return c;
}

/* Connects with `conninfo`; fails the test when that does not work. */
static PGconn *pg_fixture_connect(const char *conninfo)
{
    return pg_fixture_checked(PQconnectdb(conninfo));
}

void pg_fixture_conn_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s\n-> %s", sql,
              r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    PQclear(r);
}

/* Runs `sql` on a short connection to the server's own database (CREATE/DROP DATABASE),
 * without GSS or TLS (the test server is on loopback: nothing to negotiate). */
static void pg_fixture_on_server(const char *sql)
{
    const char *const keys[] = {"dbname", "gssencmode", "sslmode", NULL};
    const char *const values[] = {pg_fixture_url(), "disable", "disable", NULL};
    PGconn *c = pg_fixture_checked(PQconnectdbParams(keys, values, 1));
    pg_fixture_conn_exec(c, sql);
    PQfinish(c);
}

/* Reads a whole file into a NUL-terminated heap string (caller frees). */
static char *pg_fixture_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s: %s", path, strerror(errno));
    cr_assert(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    cr_assert(n >= 0);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    cr_assert(s, "out of memory reading %s", path);
    cr_assert(fread(s, 1, (size_t)n, f) == (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

void pg_fixture_migrations(glob_t *g)
{
    char here[PATH_MAX], pattern[PATH_MAX + 64];
    snprintf(here, sizeof here, "%s", __FILE__);
    snprintf(pattern, sizeof pattern, "%s/../../deploy/supabase/migrations/*.sql", dirname(here));
    cr_assert(glob(pattern, 0, NULL, g) == 0 && g->gl_pathc > 0, "no migrations match %s", pattern);
}

void pg_fixture_migrate(PGconn *c)
{
    glob_t g;
    pg_fixture_migrations(&g);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char *sql = pg_fixture_slurp(g.gl_pathv[i]);
        PGresult *r = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(r);
        cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s failed: %s", g.gl_pathv[i],
                  r ? PQresultErrorMessage(r) : PQerrorMessage(c));
        PQclear(r);
        free(sql);
    }
    globfree(&g);
}

void pg_fixture_conninfo(const pg_fixture *f, int port, char *out, size_t outlen)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    snprintf(out, outlen,
             "host='%s' port='%s' dbname='%s' user='%s' password='%s' sslmode=disable"
             " gssencmode=disable",
             port ? "127.0.0.1" : f->host, port ? p : f->port, f->dbname,
             f->user[0] ? f->user : "postgres", f->password);
}

void pg_fixture_open(pg_fixture *f)
{
    static int serial;
    char sql[256];
    memset(f, 0, sizeof *f);
    pg_fixture_parse(f, pg_fixture_url());
    snprintf(f->dbname, sizeof f->dbname, "calllog_unit_%d_%d", (int)getpid(), serial++);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", f->dbname);
    pg_fixture_on_server(sql); /* a leftover of a crashed run with the same pid */
    snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\"", f->dbname);
    pg_fixture_on_server(sql);
    pg_fixture_conninfo(f, 0, f->url, sizeof f->url);
    f->admin = pg_fixture_connect(f->url);
    pg_fixture_migrate(f->admin);
}

void pg_fixture_close(pg_fixture *f)
{
    char sql[160];
    if (f->admin)
        PQfinish(f->admin);
    f->admin = NULL;
    if (!f->dbname[0])
        return;
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", f->dbname);
    f->dbname[0] = '\0';
    pg_fixture_on_server(sql);
}

void pg_fixture_exec(pg_fixture *f, const char *sql)
{
    pg_fixture_conn_exec(f->admin, sql);
}

char *pg_fixture_conn_value(PGconn *c, const char *sql, const char *arg, char *out, size_t outlen)
{
    const char *params[1] = {arg};
    PGresult *r = PQexecParams(c, sql, arg ? 1 : 0, NULL, params, NULL, NULL, 0);
    cr_assert(PQresultStatus(r) == PGRES_TUPLES_OK, "%s\n-> %s", sql,
              r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    if (PQntuples(r) == 0)
        snprintf(out, outlen, "(none)");
    else
        snprintf(out, outlen, "%s", PQgetisnull(r, 0, 0) ? "(null)" : PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

char *pg_fixture_value(pg_fixture *f, const char *sql, const char *arg, char *out, size_t outlen)
{
    return pg_fixture_conn_value(f->admin, sql, arg, out, outlen);
}
