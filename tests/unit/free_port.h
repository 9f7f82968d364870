/* free_port — a loopback TCP port for unit tests that start servers of their own.
 *
 * The kernel picks a port by binding port 0; the socket is closed at once, so the port
 * is free right now (another process could take it before the test does, which on a test
 * machine does not happen in practice). Header-only, like the other test fixtures. */
#ifndef CALLLOG_TEST_FREE_PORT_H
#define CALLLOG_TEST_FREE_PORT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A TCP port on 127.0.0.1 that nothing listens on right now, or -1. */
static inline int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

#endif
