/*
 * usrsctp_puppet: one SCTP association over UDP encapsulation (RFC 6951),
 * driven by the interop tests over stdin/stdout, one line per command or
 * event.
 *
 * usage: usrsctp_puppet BIND REMOTE_IP REMOTE_UDP_PORT LOCAL_UDP_PORT
 *   BIND: 127.0.0.1 (one address), 0.0.0.0 (the IPv4 wildcard: the INIT
 *   then lists the host's addresses) or :: (the IPv6 wildcard).
 *
 * commands (stdin):
 *   connect
 *   send STREAM PPID UNORDERED HEX     (one user message)
 *   reset STREAM                       (RFC 6525 outgoing stream reset)
 *   shutdown                           (graceful: SHUTDOWN)
 *   abort                              (ABORT, SO_LINGER 0)
 *   quit
 * events (stdout):
 *   CONNECTED | MSG STREAM PPID HEX | CLOSED | ABORTED INFO_HEX
 *   | SHUTDOWN_RECEIVED | RESET FLAGS STREAM... | SENT | ERR TEXT | LOG TEXT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <usrsctp.h>

#define SCTP_PORT 5000

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static struct socket *sock;
static int family;
static struct sockaddr_storage remote;
static socklen_t remote_len;

/* partial message being reassembled from partial deliveries */
static unsigned char *partial;
static size_t partial_len;

static void out(const char *fmt, ...) {
    va_list ap;
    pthread_mutex_lock(&out_lock);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

static void out_hex(const char *prefix, const unsigned char *data, size_t len) {
    static const char digits[] = "0123456789abcdef";
    pthread_mutex_lock(&out_lock);
    fputs(prefix, stdout);
    for (size_t i = 0; i < len; i++) {
        putchar(digits[data[i] >> 4]);
        putchar(digits[data[i] & 15]);
    }
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

static void notification(union sctp_notification *n) {
    switch (n->sn_header.sn_type) {
    case SCTP_ASSOC_CHANGE: {
        struct sctp_assoc_change *sac = &n->sn_assoc_change;
        size_t info = sac->sac_length > sizeof(*sac) ? sac->sac_length - sizeof(*sac) : 0;
        switch (sac->sac_state) {
        case SCTP_COMM_UP:
            out("CONNECTED");
            break;
        case SCTP_SHUTDOWN_COMP:
            out("CLOSED");
            break;
        case SCTP_COMM_LOST:
        case SCTP_CANT_STR_ASSOC:
            /* sac_info: the ABORT chunk received, if any */
            out_hex("ABORTED ", sac->sac_info, info);
            break;
        default:
            out("LOG assoc change %u", sac->sac_state);
        }
        break;
    }
    case SCTP_SHUTDOWN_EVENT:
        out("SHUTDOWN_RECEIVED");
        break;
    case SCTP_STREAM_RESET_EVENT: {
        struct sctp_stream_reset_event *e = &n->sn_strreset_event;
        size_t count = (e->strreset_length - sizeof(*e)) / sizeof(uint16_t);
        char line[1024];
        int pos = snprintf(line, sizeof line, "RESET %u", e->strreset_flags);
        for (size_t i = 0; i < count && pos < 1000; i++)
            pos += snprintf(line + pos, sizeof line - pos, " %u", e->strreset_stream_list[i]);
        out("%s", line);
        break;
    }
    case SCTP_REMOTE_ERROR:
        out("LOG remote error %u", n->sn_remote_error.sre_error);
        break;
    case SCTP_SEND_FAILED_EVENT:
        out("LOG send failed");
        break;
    default:
        out("LOG notification %u", n->sn_header.sn_type);
    }
}

static int receive_cb(struct socket *s, union sctp_sockstore addr, void *data, size_t datalen,
                      struct sctp_rcvinfo rcv, int flags, void *ulp_info) {
    (void)s;
    (void)addr;
    (void)ulp_info;
    if (data == NULL) {
        return 1;
    }
    if (flags & MSG_NOTIFICATION) {
        notification((union sctp_notification *)data);
    } else {
        unsigned char *grown = realloc(partial, partial_len + datalen);
        if (grown == NULL) {
            out("ERR out of memory");
            exit(1);
        }
        partial = grown;
        memcpy(partial + partial_len, data, datalen);
        partial_len += datalen;
        if (flags & MSG_EOR) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "MSG %u %u ", rcv.rcv_sid, ntohl(rcv.rcv_ppid));
            out_hex(prefix, partial, partial_len);
            partial_len = 0;
        }
    }
    free(data);
    return 1;
}

static int nibble(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int unhex(const char *hex, unsigned char **outp, size_t *lenp) {
    size_t n = strlen(hex);
    if (n % 2) return -1;
    unsigned char *buf = malloc(n / 2 + 1);
    if (!buf) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(buf);
            return -1;
        }
        buf[i] = (unsigned char)(hi << 4 | lo);
    }
    *outp = buf;
    *lenp = n / 2;
    return 0;
}

static void do_send(unsigned stream, unsigned ppid, int unordered, const char *hex) {
    unsigned char *buf;
    size_t len;
    if (unhex(hex, &buf, &len) != 0) {
        out("ERR bad hex");
        return;
    }
    struct sctp_sndinfo info;
    memset(&info, 0, sizeof info);
    info.snd_sid = (uint16_t)stream;
    info.snd_ppid = htonl(ppid);
    info.snd_flags = unordered ? SCTP_UNORDERED : 0;
    for (int tries = 0;; tries++) {
        ssize_t n = usrsctp_sendv(sock, buf, len, NULL, 0, &info, sizeof info, SCTP_SENDV_SNDINFO, 0);
        if (n >= 0) {
            out("SENT");
            break;
        }
        if ((errno == EWOULDBLOCK || errno == EAGAIN) && tries < 60000) {
            usleep(1000);
            continue;
        }
        out("ERR send: %s", strerror(errno));
        break;
    }
    free(buf);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s BIND REMOTE_IP REMOTE_UDP_PORT LOCAL_UDP_PORT\n", argv[0]);
        return 2;
    }
    const char *bind_ip = argv[1];
    const char *remote_ip = argv[2];
    uint16_t remote_udp = (uint16_t)atoi(argv[3]);
    uint16_t local_udp = (uint16_t)atoi(argv[4]);
    family = strchr(bind_ip, ':') ? AF_INET6 : AF_INET;

    usrsctp_init(local_udp, NULL, NULL);
    usrsctp_sysctl_set_sctp_blackhole(2);
    usrsctp_sysctl_set_sctp_heartbeat_interval_default(5000);
    usrsctp_sysctl_set_sctp_enable_sack_immediately(1);

    sock = usrsctp_socket(family, SOCK_STREAM, IPPROTO_SCTP, receive_cb, NULL, 0, NULL);
    if (!sock) {
        out("ERR socket: %s", strerror(errno));
        return 1;
    }
    usrsctp_set_non_blocking(sock, 1);

    struct sctp_udpencaps encaps;
    memset(&encaps, 0, sizeof encaps);
    encaps.sue_address.ss_family = family;
    encaps.sue_port = htons(remote_udp);
    if (usrsctp_setsockopt(sock, IPPROTO_SCTP, SCTP_REMOTE_UDP_ENCAPS_PORT, &encaps, sizeof encaps) < 0)
        out("ERR encaps: %s", strerror(errno));

    struct sctp_initmsg init;
    memset(&init, 0, sizeof init);
    init.sinit_num_ostreams = 16;
    init.sinit_max_instreams = 16;
    usrsctp_setsockopt(sock, IPPROTO_SCTP, SCTP_INITMSG, &init, sizeof init);

    int bufsize = 4 * 1024 * 1024;
    usrsctp_setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
    usrsctp_setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
    int on = 1;
    usrsctp_setsockopt(sock, IPPROTO_SCTP, SCTP_NODELAY, &on, sizeof on);
    /* deliver partial messages above this size; reassembled above */
    struct sctp_assoc_value av;
    memset(&av, 0, sizeof av);
    av.assoc_id = SCTP_FUTURE_ASSOC;
    av.assoc_value = SCTP_ENABLE_RESET_STREAM_REQ | SCTP_ENABLE_CHANGE_ASSOC_REQ;
    usrsctp_setsockopt(sock, IPPROTO_SCTP, SCTP_ENABLE_STREAM_RESET, &av, sizeof av);

    uint16_t events[] = {SCTP_ASSOC_CHANGE, SCTP_SHUTDOWN_EVENT, SCTP_STREAM_RESET_EVENT,
                         SCTP_REMOTE_ERROR, SCTP_SEND_FAILED_EVENT};
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
        struct sctp_event ev;
        memset(&ev, 0, sizeof ev);
        ev.se_assoc_id = SCTP_FUTURE_ASSOC;
        ev.se_on = 1;
        ev.se_type = events[i];
        usrsctp_setsockopt(sock, IPPROTO_SCTP, SCTP_EVENT, &ev, sizeof ev);
    }

    if (family == AF_INET) {
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons(SCTP_PORT);
        inet_pton(AF_INET, bind_ip, &a.sin_addr);
        if (usrsctp_bind(sock, (struct sockaddr *)&a, sizeof a) < 0)
            out("ERR bind: %s", strerror(errno));
        struct sockaddr_in *r = (struct sockaddr_in *)&remote;
        r->sin_family = AF_INET;
        r->sin_port = htons(SCTP_PORT);
        inet_pton(AF_INET, remote_ip, &r->sin_addr);
        remote_len = sizeof *r;
    } else {
        struct sockaddr_in6 a;
        memset(&a, 0, sizeof a);
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(SCTP_PORT);
        inet_pton(AF_INET6, bind_ip, &a.sin6_addr);
        if (usrsctp_bind(sock, (struct sockaddr *)&a, sizeof a) < 0)
            out("ERR bind: %s", strerror(errno));
        struct sockaddr_in6 *r = (struct sockaddr_in6 *)&remote;
        r->sin6_family = AF_INET6;
        r->sin6_port = htons(SCTP_PORT);
        inet_pton(AF_INET6, remote_ip, &r->sin6_addr);
        remote_len = sizeof *r;
    }
    out("READY");

    size_t cap = 4 * 1024 * 1024;
    char *line = malloc(cap);
    int closed = 0;
    while (line && fgets(line, (int)cap, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        if (strcmp(line, "connect") == 0) {
            if (usrsctp_connect(sock, (struct sockaddr *)&remote, remote_len) < 0 &&
                errno != EINPROGRESS)
                out("ERR connect: %s", strerror(errno));
        } else if (strncmp(line, "send ", 5) == 0) {
            unsigned stream, ppid;
            int unordered, off = 0;
            if (sscanf(line + 5, "%u %u %d %n", &stream, &ppid, &unordered, &off) < 3 || off == 0) {
                out("ERR bad send");
                continue;
            }
            do_send(stream, ppid, unordered, line + 5 + off);
        } else if (strncmp(line, "reset ", 6) == 0) {
            unsigned stream = (unsigned)atoi(line + 6);
            size_t len = sizeof(struct sctp_reset_streams) + sizeof(uint16_t);
            struct sctp_reset_streams *srs = calloc(1, len);
            srs->srs_assoc_id = SCTP_ALL_ASSOC;
            srs->srs_flags = SCTP_STREAM_RESET_OUTGOING;
            srs->srs_number_streams = 1;
            srs->srs_stream_list[0] = (uint16_t)stream;
            if (usrsctp_setsockopt(sock, IPPROTO_SCTP, SCTP_RESET_STREAMS, srs, (socklen_t)len) < 0)
                out("ERR reset: %s", strerror(errno));
            else
                out("LOG reset requested %u", stream);
            free(srs);
        } else if (strcmp(line, "shutdown") == 0) {
            if (usrsctp_shutdown(sock, SHUT_WR) < 0)
                out("ERR shutdown: %s", strerror(errno));
        } else if (strcmp(line, "abort") == 0) {
            struct linger l = {1, 0};
            usrsctp_setsockopt(sock, SOL_SOCKET, SO_LINGER, &l, sizeof l);
            usrsctp_close(sock);
            closed = 1;
            out("ABORTED_LOCAL");
        } else if (strcmp(line, "quit") == 0) {
            break;
        } else {
            out("ERR unknown command");
        }
    }
    if (!closed) usrsctp_close(sock);
    for (int i = 0; i < 100 && usrsctp_finish() != 0; i++) usleep(10000);
    return 0;
}
