/* Raw-UDP limits for perf/run.sh, on loopback (no SCTP, no reliability):
 *
 *   raw_udp recv PORT COUNT            COUNT sockets on PORT.. PORT+COUNT-1,
 *                                      recvmmsg x32 on each; prints one JSON
 *                                      line once 1 s passes with nothing
 *   raw_udp send PORT SIZE SECONDS     sendmmsg x32 blast to PORT
 *   raw_udp gso PORT SIZE SECONDS      sendmsg + UDP_SEGMENT (64 segments)
 *   raw_udp forward PORT DEST COUNT    each datagram received on PORT is sent
 *                                      to DEST.. DEST+COUNT-1 (sendmmsg),
 *                                      the 1 -> COUNT fan-out of a server
 *
 * Socket buffers are 4 MiB (SO_RCVBUFFORCE/SO_SNDBUFFORCE when allowed). */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#define BATCH 32
#define MAXN 1024

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "raw_udp: %s: %s\n", what, strerror(errno));
  exit(1);
}

static struct sockaddr_in addr(int port) {
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

static int sock(int port) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  if (s < 0) die("socket");
  int buf = 4 * 1024 * 1024;
  if (setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) < 0)
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  if (setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) < 0)
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  if (port >= 0) {
    struct sockaddr_in a = addr(port);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  }
  return s;
}

static char bufs[BATCH][2048];

static int recv_batch(int s, struct mmsghdr *m, struct iovec *iov, int flags) {
  for (int i = 0; i < BATCH; i++) {
    iov[i].iov_base = bufs[i];
    iov[i].iov_len = sizeof bufs[i];
    memset(&m[i].msg_hdr, 0, sizeof m[i].msg_hdr);
    m[i].msg_hdr.msg_iov = &iov[i];
    m[i].msg_hdr.msg_iovlen = 1;
  }
  return recvmmsg(s, m, BATCH, flags, NULL);
}

static int do_recv(int port, int count) {
  if (count < 1 || count > MAXN) count = 1;
  struct pollfd p[MAXN];
  for (int i = 0; i < count; i++) p[i] = (struct pollfd){.fd = sock(port + i), .events = POLLIN};
  struct mmsghdr m[BATCH];
  struct iovec iov[BATCH];
  uint64_t dgrams = 0, bytes = 0;
  double first = 0, last = 0;
  for (;;) {
    int r = poll(p, (nfds_t)count, 1000);
    if (r < 0) die("poll");
    if (r == 0 && dgrams > 0) break;
    for (int i = 0; i < count; i++) {
      if (!(p[i].revents & POLLIN)) continue;
      int n;
      while ((n = recv_batch(p[i].fd, m, iov, MSG_DONTWAIT)) > 0) {
        last = now();
        if (dgrams == 0) first = last;
        dgrams += (uint64_t)n;
        for (int k = 0; k < n; k++) bytes += m[k].msg_len;
      }
    }
  }
  double secs = last > first ? last - first : 0;
  printf("{\"peer\":\"raw-udp\",\"sockets\":%d,\"datagrams\":%llu,\"bytes\":%llu,\"seconds\":%.6f,\"datagrams_per_s\":%.0f,\"bytes_per_s\":%.0f}\n",
         count, (unsigned long long)dgrams, (unsigned long long)bytes, secs,
         secs > 0 ? dgrams / secs : 0, secs > 0 ? bytes / secs : 0);
  return 0;
}

static int do_send(int port, int size, double seconds, int gso) {
  int s = sock(-1);
  struct sockaddr_in to = addr(port);
  static char payload[65536];
  memset(payload, 0xab, sizeof payload);
  if (size < 1) size = 1;
  if (size > 1472) size = 1472;
  uint64_t sent = 0;
  double end = now() + seconds;
  if (gso) {
    int segs = 65000 / size < 64 ? 65000 / size : 64;
    int seg = size;
    if (setsockopt(s, IPPROTO_UDP, UDP_SEGMENT, &seg, sizeof seg) < 0) die("UDP_SEGMENT");
    while (now() < end) {
      if (sendto(s, payload, (size_t)(segs * size), 0, (struct sockaddr *)&to, sizeof to) < 0) {
        if (errno == ENOBUFS || errno == EAGAIN) continue;
        die("sendto");
      }
      sent += (uint64_t)segs;
    }
  } else {
    struct mmsghdr m[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
      iov[i] = (struct iovec){.iov_base = payload, .iov_len = (size_t)size};
      memset(&m[i].msg_hdr, 0, sizeof m[i].msg_hdr);
      m[i].msg_hdr.msg_iov = &iov[i];
      m[i].msg_hdr.msg_iovlen = 1;
      m[i].msg_hdr.msg_name = &to;
      m[i].msg_hdr.msg_namelen = sizeof to;
    }
    while (now() < end) {
      int n = sendmmsg(s, m, BATCH, 0);
      if (n < 0) {
        if (errno == ENOBUFS || errno == EAGAIN) continue;
        die("sendmmsg");
      }
      sent += (uint64_t)n;
    }
  }
  fprintf(stderr, "raw_udp: sent %llu datagrams\n", (unsigned long long)sent);
  return 0;
}

static int do_forward(int port, int dest, int count) {
  if (count < 1 || count > MAXN) count = 1;
  int s = sock(port);
  int out = sock(-1);
  struct sockaddr_in to[MAXN];
  for (int i = 0; i < count; i++) to[i] = addr(dest + i);
  struct mmsghdr m[BATCH], o[BATCH];
  struct iovec iov[BATCH], oiov[BATCH];
  uint64_t in = 0, fwd = 0;
  struct timeval tv = {.tv_sec = 3};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (;;) {
    int n = recv_batch(s, m, iov, 0);
    if (n <= 0) break;
    in += (uint64_t)n;
    for (int k = 0; k < n; k++) {
      /* One datagram to every destination, BATCH at a time. */
      for (int d = 0; d < count; d += BATCH) {
        int b = count - d < BATCH ? count - d : BATCH;
        for (int j = 0; j < b; j++) {
          oiov[j] = (struct iovec){.iov_base = bufs[k], .iov_len = m[k].msg_len};
          memset(&o[j].msg_hdr, 0, sizeof o[j].msg_hdr);
          o[j].msg_hdr.msg_iov = &oiov[j];
          o[j].msg_hdr.msg_iovlen = 1;
          o[j].msg_hdr.msg_name = &to[d + j];
          o[j].msg_hdr.msg_namelen = sizeof to[d + j];
        }
        int r = sendmmsg(out, o, (unsigned)b, 0);
        if (r > 0) fwd += (uint64_t)r;
      }
    }
  }
  fprintf(stderr, "raw_udp: forwarded %llu datagrams as %llu\n", (unsigned long long)in,
          (unsigned long long)fwd);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 4 && !strcmp(argv[1], "recv")) return do_recv(atoi(argv[2]), atoi(argv[3]));
  if (argc >= 5 && !strcmp(argv[1], "send")) return do_send(atoi(argv[2]), atoi(argv[3]), atof(argv[4]), 0);
  if (argc >= 5 && !strcmp(argv[1], "gso")) return do_send(atoi(argv[2]), atoi(argv[3]), atof(argv[4]), 1);
  if (argc >= 5 && !strcmp(argv[1], "forward")) return do_forward(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
  fprintf(stderr, "usage: raw_udp recv PORT COUNT | send PORT SIZE SECONDS | gso PORT SIZE SECONDS | forward PORT DEST COUNT\n");
  return 2;
}
