/* pg_proxy — a tiny TCP proxy thread in front of PostgreSQL, to make "Postgres down"
 * happen at an exact point of a unit test.
 *
 * The proxy listens on 127.0.0.1 (a port the kernel picks) and relays bytes both ways to
 * the server; it does not read the protocol. pg_proxy_cut closes every relayed
 * connection and, until pg_proxy_restore, accepts new ones only to close them at once:
 * to a client this is a server that went away (a crash, a failover, a cut cable) and
 * refuses to come back. Both return once the proxy has done it, so the next statement
 * the test makes the code send meets the new state. Connect through it with
 * pg_fixture_conninfo(f, pg_proxy_port(p), ...). Part of calllog_testlib (tests/lib/). */
#ifndef CALLLOG_TEST_PG_PROXY_H
#define CALLLOG_TEST_PG_PROXY_H

typedef struct pg_proxy pg_proxy;

/* Starts a proxy to the server at `host`:`port` (TCP). Returns it (caller owns;
 * pg_proxy_stop), or NULL when the address does not resolve, no socket could be bound
 * or memory ran out. */
pg_proxy *pg_proxy_start(const char *host, const char *port);

/* The loopback port the proxy listens on. */
int pg_proxy_port(const pg_proxy *p);

/* Closes every relayed connection and refuses new ones (accepts and closes them). */
void pg_proxy_cut(pg_proxy *p);

/* Relays new connections again (the ones cut stay closed: clients reconnect). */
void pg_proxy_restore(pg_proxy *p);

/* How many client connections the proxy has relayed since it started (refused ones
 * not counted). */
int pg_proxy_connections(pg_proxy *p);

/* Stops the thread, closes every socket and frees the proxy. NULL is accepted. */
void pg_proxy_stop(pg_proxy *p);

#endif
