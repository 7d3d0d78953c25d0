/*
 * New-connection load generator for scripts/bench/services.ts (issue 15): the Node client spends
 * about as much CPU per connection as the proxy it measures, so on a 2-core box it can be the
 * ceiling. This one is a single-threaded epoll loop: keep C connections open at a time, each a
 * non-blocking connect, one 64 B write, read until the server's FIN (an echo-once server closes
 * first), close. Prints one JSON line: connections/s, failures, latency p50/p99 µs and the
 * process's own CPU µs per connection.
 *
 * Build: gcc -O2 -o connrate connrate.c     Run: connrate HOST PORT N CONCURRENCY [TIMEOUT_MS]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
  int fd;
  int got;
  int sent;
  double t0;
};

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static struct sockaddr_in addr;
static int epfd;
static char msg[64];

static int start(struct conn *c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) return -1;
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->got = 0;
  c->sent = 0;
  c->t0 = now_us();
  int r = connect(c->fd, (struct sockaddr *)&addr, sizeof addr);
  if (r < 0 && errno != EINPROGRESS) {
    close(c->fd);
    return -1;
  }
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
  epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: connrate HOST PORT N CONCURRENCY [TIMEOUT_MS]\n");
    return 2;
  }
  long n = atol(argv[3]);
  int conc = atoi(argv[4]);
  double timeout_us = (argc > 5 ? atof(argv[5]) : 5000) * 1000;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)atoi(argv[2]));
  if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
    fprintf(stderr, "bad address %s\n", argv[1]);
    return 2;
  }
  memset(msg, 2, sizeof msg);
  epfd = epoll_create1(0);
  struct conn *cs = calloc((size_t)conc, sizeof *cs);
  double *lat = calloc((size_t)n, sizeof *lat);
  long started = 0, done = 0, failed = 0;
  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  double t0 = now_us();
  for (int i = 0; i < conc; i++) cs[i].fd = -1;
  for (int i = 0; i < conc && started < n; i++, started++)
    if (start(&cs[i]) < 0) failed++, done++;
  struct epoll_event evs[256];
  char buf[4096];
  while (done < n) {
    int k = epoll_wait(epfd, evs, 256, 100);
    double t = now_us();
    for (int i = 0; i < k; i++) {
      struct conn *c = evs[i].data.ptr;
      int finished = 0, bad = 0;
      if (!c->sent && (evs[i].events & EPOLLOUT)) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || write(c->fd, msg, sizeof msg) != (ssize_t)sizeof msg) bad = 1;
        else {
          c->sent = 1;
          struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
          epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        }
      }
      if (!bad && c->sent && (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        for (;;) {
          ssize_t r = read(c->fd, buf, sizeof buf);
          if (r > 0) c->got += (int)r;
          else if (r == 0) {
            finished = 1;
            break;
          } else {
            if (errno != EAGAIN) bad = 1;
            break;
          }
        }
      } else if (!bad && (evs[i].events & (EPOLLHUP | EPOLLERR))) bad = 1;
      if (finished && c->got < 64) bad = 1;
      if (!bad && !finished && t - c->t0 > timeout_us) bad = 1;
      if (finished || bad) {
        close(c->fd);
        c->fd = -1;
        if (bad) failed++;
        else lat[done - failed] = t - c->t0;
        done++;
        if (started < n) {
          started++;
          if (start(c) < 0) failed++, done++;
        }
      }
    }
    /* timeouts of connections that never get an event */
    if (k == 0)
      for (int i = 0; i < conc; i++)
        if (cs[i].fd >= 0 && t - cs[i].t0 > timeout_us) {
          close(cs[i].fd);
          cs[i].fd = -1;
          failed++;
          done++;
          if (started < n) {
            started++;
            if (start(&cs[i]) < 0) failed++, done++;
          }
        }
  }
  double secs = (now_us() - t0) / 1e6;
  getrusage(RUSAGE_SELF, &ru1);
  double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) * 1e6 + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) +
               (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1e6 + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec);
  long ok = done - failed;
  qsort(lat, (size_t)ok, sizeof *lat, cmp);
  printf("{\"connsPerSec\":%.1f,\"ok\":%ld,\"failed\":%ld,\"p50us\":%.1f,\"p99us\":%.1f,\"cpuUsPerConn\":%.1f}\n", ok / secs, ok, failed,
         ok ? lat[ok / 2] : 0.0, ok ? lat[(long)(ok * 0.99)] : 0.0, cpu / (double)n);
  return failed > 0 ? 1 : 0;
}
