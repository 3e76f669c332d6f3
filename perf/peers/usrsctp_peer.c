/* usrsctp peer for perf/run.sh: one association over UDP encapsulation
 * (RFC 6951), reliable ordered, stream 0, PPID 53 (binary), loopback.
 *
 *   usrsctp_peer recv UDP_PORT SCTP_PORT [ADDR]         (prints one JSON line)
 *   usrsctp_peer send UDP_PORT PEER_UDP_PORT SCTP_PORT SIZE SECONDS [PEER_ADDR LOCAL_ADDR]
 *
 * The receiver counts messages and bytes from the first message to the
 * sender's close and prints {"messages":…,"bytes":…,"seconds":…}. Both
 * bind 127.0.0.1 (not the wildcard: sctp-proto refuses INIT address
 * parameters, and the same binding keeps the peers comparable), or the
 * addresses given (perf/run.sh's `wan`: across two namespaces). The SCTP
 * send and receive spaces are raised to 4 MiB; the in-flight data is
 * bounded by the send space (SO_SNDBUF). */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <usrsctp.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "usrsctp_peer: %s: %s\n", what, strerror(errno));
  exit(1);
}

static struct socket *make_socket(uint16_t sctp_port, const char *addr) {
  struct socket *s = usrsctp_socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP, NULL, NULL, 0, NULL);
  if (!s) die("usrsctp_socket");
  int buf = 4 * 1024 * 1024;
  usrsctp_setsockopt(s, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  usrsctp_setsockopt(s, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  int one = 1;
  usrsctp_setsockopt(s, IPPROTO_SCTP, SCTP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons(sctp_port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (addr && inet_pton(AF_INET, addr, &a.sin_addr) != 1) { errno = EINVAL; die(addr); }
  if (usrsctp_bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("usrsctp_bind");
  return s;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: usrsctp_peer recv UDP_PORT SCTP_PORT [ADDR] | send UDP_PORT PEER_UDP_PORT SCTP_PORT SIZE SECONDS [PEER_ADDR LOCAL_ADDR]\n");
    return 2;
  }
  int sending = strcmp(argv[1], "send") == 0;
  uint16_t udp_port = (uint16_t)atoi(argv[2]);
  usrsctp_init(udp_port, NULL, NULL);
  usrsctp_sysctl_set_sctp_sendspace(4 * 1024 * 1024);
  usrsctp_sysctl_set_sctp_recvspace(4 * 1024 * 1024);
  usrsctp_sysctl_set_sctp_ecn_enable(0);
  static char buf[65536];

  if (!sending) {
    uint16_t sctp_port = (uint16_t)atoi(argv[3]);
    struct socket *l = make_socket(sctp_port, argc > 4 ? argv[4] : NULL);
    if (usrsctp_listen(l, 1) < 0) die("usrsctp_listen");
    fprintf(stderr, "usrsctp_peer: listening\n");
    struct socket *c = usrsctp_accept(l, NULL, NULL);
    if (!c) die("usrsctp_accept");
    uint64_t messages = 0, bytes = 0;
    double first = 0, last = 0;
    for (;;) {
      struct sockaddr_in from;
      socklen_t fromlen = sizeof from;
      struct sctp_rcvinfo info;
      socklen_t infolen = sizeof info;
      unsigned int type = 0;
      int flags = 0;
      ssize_t n = usrsctp_recvv(c, buf, sizeof buf, (struct sockaddr *)&from, &fromlen, &info,
                                &infolen, &type, &flags);
      if (n <= 0) break;
      if (flags & MSG_NOTIFICATION) continue;
      last = now();
      if (messages == 0) first = last;
      if (flags & MSG_EOR) messages++;
      bytes += (uint64_t)n;
    }
    double secs = last > first ? last - first : 0;
    printf("{\"peer\":\"usrsctp\",\"messages\":%llu,\"bytes\":%llu,\"seconds\":%.6f,\"messages_per_s\":%.0f,\"bytes_per_s\":%.0f}\n",
           (unsigned long long)messages, (unsigned long long)bytes, secs,
           secs > 0 ? messages / secs : 0, secs > 0 ? bytes / secs : 0);
    fflush(stdout);
    usrsctp_close(c);
    usrsctp_close(l);
  } else {
    if (argc < 7) {
      fprintf(stderr, "usrsctp_peer send needs UDP_PORT PEER_UDP_PORT SCTP_PORT SIZE SECONDS\n");
      return 2;
    }
    uint16_t peer_udp = (uint16_t)atoi(argv[3]);
    uint16_t sctp_port = (uint16_t)atoi(argv[4]);
    size_t size = (size_t)atoi(argv[5]);
    double seconds = atof(argv[6]);
    if (size > sizeof buf) size = sizeof buf;
    const char *peer_addr = argc > 8 ? argv[7] : NULL;
    struct socket *s = make_socket(0, argc > 8 ? argv[8] : NULL);
    struct sctp_udpencaps enc = {0};
    struct sockaddr_in *ea = (struct sockaddr_in *)&enc.sue_address;
    ea->sin_family = AF_INET;
    enc.sue_port = htons(peer_udp);
    if (usrsctp_setsockopt(s, IPPROTO_SCTP, SCTP_REMOTE_UDP_ENCAPS_PORT, &enc, sizeof enc) < 0)
      die("SCTP_REMOTE_UDP_ENCAPS_PORT");
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(sctp_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (peer_addr && inet_pton(AF_INET, peer_addr, &a.sin_addr) != 1) { errno = EINVAL; die(peer_addr); }
    if (usrsctp_connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("usrsctp_connect");
    struct sctp_sndinfo snd = {0};
    snd.snd_sid = 0;
    snd.snd_ppid = htonl(53);
    memset(buf, 0xab, size);
    double end = now() + seconds;
    uint64_t sent = 0;
    while (now() < end) {
      for (int i = 0; i < 64; i++) {
        if (usrsctp_sendv(s, buf, size, NULL, 0, &snd, sizeof snd, SCTP_SENDV_SNDINFO, 0) < 0) die("usrsctp_sendv");
        sent++;
      }
    }
    fprintf(stderr, "usrsctp_peer: sent %llu\n", (unsigned long long)sent);
    usrsctp_shutdown(s, SHUT_WR);
    usrsctp_close(s);
    sleep(1);
  }
  while (usrsctp_finish() != 0) usleep(100000);
  return 0;
}
