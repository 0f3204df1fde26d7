/*
 * The workers rows' load generator in C (see load-generator.ts, which run.ts
 * uses when no C compiler is found): CONNECTIONS connections to
 * 127.0.0.1:PORT, each with one 16-byte request outstanding at a time,
 * driven by one epoll loop. The server under test competes with it for the
 * machine's cores; this one spends a few microseconds of CPU per request
 * (a read and a write), a third of what a node:net loop spends.
 *
 *   load-generator PORT CONNECTIONS WARMUP REQUESTS SERVER_PID
 *
 * Prints one line: elapsed_ms p50_us p99_us cpu_us_per_request
 * server_cpu_us_per_request (the server's from /proc/SERVER_PID/stat, in
 * clock ticks: 10 ms steps, about 1% of a one-second timed section).
 */
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

#define REQUEST_BYTES 16

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double cpu_us(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e6 + usage.ru_utime.tv_usec + usage.ru_stime.tv_usec;
}

/* CPU time (user + system, µs) of process `pid` so far, from /proc; -1 when unreadable. */
static double process_cpu_us(long pid) {
  char path[64], text[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *file = fopen(path, "r");
  if (file == NULL) return -1;
  size_t n = fread(text, 1, sizeof text - 1, file);
  fclose(file);
  text[n] = 0;
  /* Fields after the command name (which may hold spaces) start after the last ')'. */
  char *rest = strrchr(text, ')');
  unsigned long utime, stime;
  if (rest == NULL || sscanf(rest + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return -1;
  return (utime + stime) * 1e6 / sysconf(_SC_CLK_TCK);
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void fail(const char *what) {
  fprintf(stderr, "load-generator: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* Sends `total` requests over the connections, one outstanding per connection; returns when every echo is back. */
static void drive(int epoll, int *fds, int *pending, double *started, int connections, long total, double *samples) {
  static const char request[REQUEST_BYTES] = "aaaaaaaaaaaaaaa";
  long sent = 0, done = 0;
  for (int i = 0; i < connections && sent < total; i++) {
    started[i] = now_ms();
    if (write(fds[i], request, REQUEST_BYTES) != REQUEST_BYTES) fail("write");
    sent++;
  }
  struct epoll_event events[256];
  char buffer[4096];
  while (done < total) {
    int n = epoll_wait(epoll, events, 256, 10000);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("epoll_wait (no echo for 10 s?)");
    for (int e = 0; e < n; e++) {
      int i = events[e].data.u32;
      ssize_t got = read(fds[i], buffer, sizeof buffer);
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (got <= 0) fail("read (the server closed a connection?)");
      pending[i] += got;
      while (pending[i] >= REQUEST_BYTES) {
        pending[i] -= REQUEST_BYTES;
        if (samples != NULL) samples[done] = (now_ms() - started[i]) * 1000;
        done++;
        if (sent < total) {
          started[i] = now_ms();
          if (write(fds[i], request, REQUEST_BYTES) != REQUEST_BYTES) fail("write");
          sent++;
        }
      }
    }
  }
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: load-generator PORT CONNECTIONS WARMUP REQUESTS SERVER_PID\n");
    return 2;
  }
  int port = atoi(argv[1]), connections = atoi(argv[2]);
  long warmup = atol(argv[3]), requests = atol(argv[4]), server = atol(argv[5]);
  if (port <= 0 || connections <= 0 || warmup <= 0 || requests <= 0) {
    fprintf(stderr, "load-generator: bad arguments\n");
    return 2;
  }
  int *fds = calloc(connections, sizeof *fds), *pending = calloc(connections, sizeof *pending);
  double *started = calloc(connections, sizeof *started), *samples = calloc(requests, sizeof *samples);
  if (fds == NULL || pending == NULL || started == NULL || samples == NULL) fail("calloc");
  int epoll = epoll_create1(0);
  if (epoll < 0) fail("epoll_create1");
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  for (int i = 0; i < connections; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (fds[i] < 0) fail("socket");
    if (connect(fds[i], (struct sockaddr *)&address, sizeof address) != 0) fail("connect");
    int one = 1;
    setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event event = {.events = EPOLLIN, .data.u32 = i};
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, fds[i], &event) != 0) fail("epoll_ctl");
  }
  drive(epoll, fds, pending, started, connections, warmup, NULL);
  double cpu0 = cpu_us(), server0 = process_cpu_us(server), t0 = now_ms();
  drive(epoll, fds, pending, started, connections, requests, samples);
  double elapsed = now_ms() - t0, cpu = cpu_us() - cpu0, server1 = process_cpu_us(server);
  double server_cpu = server0 < 0 || server1 < 0 ? -1 : (server1 - server0) / requests;
  qsort(samples, requests, sizeof *samples, compare);
  long p50 = (requests + 1) / 2 - 1, p99 = (long)(0.99 * requests + 0.999999) - 1;
  printf("%.3f %.1f %.1f %.3f %.3f\n", elapsed, samples[p50 < 0 ? 0 : p50], samples[p99 < 0 ? 0 : p99], cpu / requests, server_cpu);
  return 0;
}
