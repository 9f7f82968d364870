/* free_port — a loopback TCP port for unit tests that start servers of their own.
 *
 * The kernel picks a port by binding port 0; the socket is closed at once, so the port
 * is free right now (another process could take it before the test does, which on a test
 * machine does not happen in practice). Part of calllog_testlib (tests/lib/). */
#ifndef CALLLOG_TEST_FREE_PORT_H
#define CALLLOG_TEST_FREE_PORT_H

/* A TCP port on 127.0.0.1 that nothing listens on right now, or -1. */
int free_port(void);

#endif
