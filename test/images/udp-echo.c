/*
 * udp-echo: the UDP endpoint of the services e2e tests (busybox has no UDP server applet).
 * Answers every datagram on 0.0.0.0:PORT with "<hostname> <the datagram>", so a test can tell
 * which endpoint answered. Built statically by ensure_test_image (scripts/lib/common.sh) into
 * orchard-test/udp-echo:1 on top of the busybox test image. Usage: udp-echo PORT
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: udp-echo PORT\n");
    return 2;
  }
  int port = atoi(argv[1]);
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "udp-echo: bad port %s\n", argv[1]);
    return 2;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) {
    perror("socket");
    return 1;
  }
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    perror("bind");
    return 1;
  }
  char host[64] = "unknown";
  gethostname(host, sizeof host - 1);
  size_t hlen = strlen(host);
  char in[1500], out[1600];
  fprintf(stderr, "udp-echo: listening on %d as %s\n", port, host);
  for (;;) {
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    ssize_t n = recvfrom(fd, in, sizeof in, 0, (struct sockaddr *)&peer, &plen);
    if (n < 0) continue;
    memcpy(out, host, hlen);
    out[hlen] = ' ';
    memcpy(out + hlen + 1, in, (size_t)n);
    sendto(fd, out, hlen + 1 + (size_t)n, 0, (struct sockaddr *)&peer, plen);
  }
}
