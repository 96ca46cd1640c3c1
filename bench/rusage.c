/*
 * rusage: runs a command and writes what it cost to fd 3, one line:
 *   WALL_S USER_S SYS_S MAXRSS_KB STATUS
 * WALL_S from CLOCK_MONOTONIC around fork and wait; USER_S and SYS_S from wait4's rusage (microseconds,
 * the command and every descendant it waited for); MAXRSS_KB the largest of those processes (GNU
 * time's %M); STATUS the exit code, or 128+N when killed by signal N. bench/ab.mjs runs each timed
 * command through it (compiled into the run's temporary directory): GNU time and bash's `time` print
 * CPU to 10 ms and 1 ms, too coarse for medians of a 40 ms Node start-up.
 * Failure: no command, or fork/exec/wait failing, prints a message to stderr and exits 127 (exec) or
 * 126, without a line on fd 3.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double seconds(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: rusage COMMAND [ARG]... (the figures go to fd 3)\n");
    return 126;
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "rusage: fork: %s\n", strerror(errno));
    return 126;
  }
  if (pid == 0) {
    close(3); /* the command does not inherit the report's pipe */
    execvp(argv[1], argv + 1);
    fprintf(stderr, "rusage: %s: %s\n", argv[1], strerror(errno));
    _exit(127);
  }
  int status;
  struct rusage use;
  while (wait4(pid, &status, 0, &use) < 0) {
    if (errno != EINTR) {
      fprintf(stderr, "rusage: wait4: %s\n", strerror(errno));
      return 126;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  dprintf(3, "%.6f %.6f %.6f %ld %d\n", wall, seconds(use.ru_utime), seconds(use.ru_stime), use.ru_maxrss, code);
  return code;
}
