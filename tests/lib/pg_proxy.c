/* pg_proxy — a byte relay in front of PostgreSQL that a test can cut (see pg_proxy.h).
 *
 * One thread polls the listening socket, a wake-up pipe and every relayed pair. The test
 * asks for a change (cut, restore, stop) under the mutex, writes a byte to the pipe and
 * waits on the condition variable until the thread has carried the request out, so a
 * cut is complete when pg_proxy_cut returns. */
#include "tests/lib/pg_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PG_PROXY_MAX_PAIRS 32

typedef enum { PG_PROXY_RELAY, PG_PROXY_CUT, PG_PROXY_STOP } pg_proxy_mode;

/* One client connection and its connection to the server; -1 when unused. */
typedef struct pg_proxy_pair {
    int cfd, sfd;
} pg_proxy_pair;

struct pg_proxy {
    int lfd, port, wake[2];
    struct sockaddr_storage up;
    socklen_t uplen;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pg_proxy_pair pairs[PG_PROXY_MAX_PAIRS];
    /* under mu: what the test asked for, what the thread has done, the count */
    pg_proxy_mode wanted, mode;
    unsigned long asked, done;
    int connections;
};

/* Closes both sockets of a pair. */
static void pg_proxy_pair_close(pg_proxy_pair *pr)
{
    if (pr->cfd >= 0)
        close(pr->cfd);
    if (pr->sfd >= 0)
        close(pr->sfd);
    pr->cfd = pr->sfd = -1;
}

/* Writes all of `buf`; returns -1 when the peer is gone. */
static int pg_proxy_write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Moves what `from` has to `to`. Returns -1 when either side is gone. */
static int pg_proxy_pump(int from, int to)
{
    char buf[16384];
    ssize_t n = recv(from, buf, sizeof buf, 0);
    if (n <= 0)
        return -1;
    return pg_proxy_write_all(to, buf, (size_t)n);
}

/* Connects a new client to the server, or closes it at once while cut. */
static void pg_proxy_accept(pg_proxy *p)
{
    int cfd = accept(p->lfd, NULL, NULL);
    if (cfd < 0)
        return;
    int sfd = p->mode == PG_PROXY_RELAY ? socket(p->up.ss_family, SOCK_STREAM, 0) : -1;
    if (sfd < 0 || connect(sfd, (struct sockaddr *)&p->up, p->uplen) != 0) {
        close(cfd);
        if (sfd >= 0)
            close(sfd);
        return;
    }
    int one = 1; /* messages go one by one: no Nagle delay */
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (int i = 0; i < PG_PROXY_MAX_PAIRS; i++) {
        if (p->pairs[i].cfd < 0) {
            p->pairs[i] = (pg_proxy_pair){cfd, sfd};
            pthread_mutex_lock(&p->mu);
            p->connections++;
            pthread_mutex_unlock(&p->mu);
            return;
        }
    }
    close(cfd);
    close(sfd);
}

/* Carries out the test's latest request (under mu). Returns 1 when asked to stop. */
static int pg_proxy_obey(pg_proxy *p)
{
    char drain[64];
    while (read(p->wake[0], drain, sizeof drain) == (ssize_t)sizeof drain)
        ;
    pthread_mutex_lock(&p->mu);
    p->mode = p->wanted;
    if (p->mode != PG_PROXY_RELAY)
        for (int i = 0; i < PG_PROXY_MAX_PAIRS; i++)
            pg_proxy_pair_close(&p->pairs[i]);
    p->done = p->asked;
    pthread_cond_broadcast(&p->cv);
    int stop = p->mode == PG_PROXY_STOP;
    pthread_mutex_unlock(&p->mu);
    return stop;
}

/* Relays whatever is readable on the pairs that poll flagged. */
static void pg_proxy_relay(pg_proxy *p, const struct pollfd *fds)
{
    for (int i = 0; i < PG_PROXY_MAX_PAIRS; i++) {
        pg_proxy_pair *pr = &p->pairs[i];
        short cev = fds[2 + 2 * i].revents, sev = fds[3 + 2 * i].revents;
        if (pr->cfd < 0 || (!cev && !sev))
            continue;
        int bad = cev && pg_proxy_pump(pr->cfd, pr->sfd) != 0;
        if (!bad && sev)
            bad = pg_proxy_pump(pr->sfd, pr->cfd) != 0;
        if (bad)
            pg_proxy_pair_close(pr);
    }
}

/* The proxy's thread: poll, accept, relay, obey. */
static void *pg_proxy_main(void *arg)
{
    pg_proxy *p = arg;
    for (;;) {
        struct pollfd fds[2 + 2 * PG_PROXY_MAX_PAIRS];
        fds[0] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
        fds[1] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        for (int i = 0; i < PG_PROXY_MAX_PAIRS; i++) {
            fds[2 + 2 * i] = (struct pollfd){.fd = p->pairs[i].cfd, .events = POLLIN};
            fds[3 + 2 * i] = (struct pollfd){.fd = p->pairs[i].sfd, .events = POLLIN};
        }
        if (poll(fds, sizeof fds / sizeof *fds, -1) <= 0)
            continue;
        if ((fds[0].revents & POLLIN) && pg_proxy_obey(p))
            return NULL;
        if (fds[1].revents & POLLIN)
            pg_proxy_accept(p);
        pg_proxy_relay(p, fds);
    }
}

/* Asks the thread for `mode` and waits until it has switched. */
static void pg_proxy_ask(pg_proxy *p, pg_proxy_mode mode)
{
    pthread_mutex_lock(&p->mu);
    p->wanted = mode;
    unsigned long ticket = ++p->asked;
    pthread_mutex_unlock(&p->mu);
    char b = 1;
    if (write(p->wake[1], &b, 1) != 1)
        return;
    pthread_mutex_lock(&p->mu);
    while (p->done < ticket)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* Resolves the server's address into `p`. Returns 0 or -1. */
static int pg_proxy_resolve(pg_proxy *p, const char *host, const char *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL)
        return -1;
    memcpy(&p->up, ai->ai_addr, ai->ai_addrlen);
    p->uplen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

/* Binds and listens on a kernel-chosen loopback port. Returns 0 or -1. */
static int pg_proxy_listen(pg_proxy *p)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(p->lfd, 64) != 0 || getsockname(p->lfd, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    p->port = ntohs(sa.sin_port);
    return 0;
}

/* Frees what pg_proxy_start set up (the thread is not running). */
static void pg_proxy_free(pg_proxy *p)
{
    for (int i = 0; i < PG_PROXY_MAX_PAIRS; i++)
        pg_proxy_pair_close(&p->pairs[i]);
    if (p->lfd >= 0)
        close(p->lfd);
    if (p->wake[0] >= 0)
        close(p->wake[0]);
    if (p->wake[1] >= 0)
        close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

pg_proxy *pg_proxy_start(const char *host, const char *port)
{
    pg_proxy *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->lfd = p->wake[0] = p->wake[1] = -1;
    for (int i = 0; i < PG_PROXY_MAX_PAIRS; i++)
        p->pairs[i].cfd = p->pairs[i].sfd = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pg_proxy_resolve(p, host, port) != 0 || pg_proxy_listen(p) != 0 || pipe(p->wake) != 0 ||
        fcntl(p->wake[0], F_SETFL, O_NONBLOCK) != 0 ||
        pthread_create(&p->thread, NULL, pg_proxy_main, p) != 0) {
        pg_proxy_free(p);
        return NULL;
    }
    return p;
}

int pg_proxy_port(const pg_proxy *p)
{
    return p->port;
}

void pg_proxy_cut(pg_proxy *p)
{
    pg_proxy_ask(p, PG_PROXY_CUT);
}

void pg_proxy_restore(pg_proxy *p)
{
    pg_proxy_ask(p, PG_PROXY_RELAY);
}

int pg_proxy_connections(pg_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->connections;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void pg_proxy_stop(pg_proxy *p)
{
    if (p == NULL)
        return;
    pg_proxy_ask(p, PG_PROXY_STOP);
    pthread_join(p->thread, NULL);
    pg_proxy_free(p);
}
