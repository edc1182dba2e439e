/*
 * replay_main.c - main() for replaying fuzz inputs without libFuzzer.
 *
 * Linked with one harness (its LLVMFuzzerTestOneInput), built by every
 * compiler the project supports (gcc, clang, the ASan/UBSan build), and
 * run by ctest over the harness's corpus and regression directories:
 *
 *   fuzz_replay_<harness> DIR_OR_FILE...
 *
 * Every regular file of each directory (sorted by name, not recursive;
 * names starting with '.' and README* skipped) and every file named on
 * the command line is passed to LLVMFuzzerTestOneInput once, after the
 * empty input. A harness oracle that fails calls abort(), so the test
 * fails; so does a file or directory that exists but cannot be read. A
 * missing directory is only noted (a harness without a corpus yet, no
 * crash ever kept). Prints how many inputs ran.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  size_t len = 0, cap = 0, n;
  if (!f) {
    fprintf(stderr, "replay: cannot open %s\n", path);
    return -1;
  }
  for (;;) {
    if (len == cap) {
      uint8_t *q;
      cap = cap ? cap * 2 : 65536;
      q = realloc(buf, cap);
      if (!q) {
        fclose(f);
        free(buf);
        return -1;
      }
      buf = q;
    }
    n = fread(buf + len, 1, cap - len, f);
    len += n;
    if (n == 0)
      break;
  }
  fclose(f);
  /* an exact-size copy, so ASan sees any read past the end */
  {
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
      free(buf);
      return -1;
    }
    if (len)
      memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
  }
  return 0;
}

static int cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static long run_dir(const char *path) {
  DIR *d = opendir(path);
  struct dirent *e;
  char **names = NULL;
  size_t n = 0, cap = 0, i;
  long ran = 0;
  if (!d) {
    fprintf(stderr, "replay: cannot read directory %s\n", path);
    return -1;
  }
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || !strncmp(e->d_name, "README", 6))
      continue;
    if (n == cap) {
      char **q;
      cap = cap ? cap * 2 : 64;
      q = realloc(names, cap * sizeof *names);
      if (!q)
        abort();
      names = q;
    }
    names[n] = malloc(strlen(path) + strlen(e->d_name) + 2);
    if (!names[n])
      abort();
    sprintf(names[n], "%s/%s", path, e->d_name);
    n++;
  }
  closedir(d);
  if (n)
    qsort(names, n, sizeof *names, cmp);
  for (i = 0; i < n; i++) {
    struct stat st;
    if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
      if (getenv("FUZZ_REPLAY_VERBOSE"))
        fprintf(stderr, "replay: %s\n", names[i]);
      if (run_file(names[i]))
        ran = -1;
      else if (ran >= 0)
        ran++;
    }
    free(names[i]);
  }
  free(names);
  return ran;
}

int main(int argc, char **argv) {
  long total = 0;
  int i, bad = 0;
  LLVMFuzzerTestOneInput((const uint8_t *)"", 0);
  for (i = 1; i < argc; i++) {
    struct stat st;
    long r;
    if (argv[i][0] == '-')
      continue; /* libFuzzer-style flags are ignored */
    if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
      r = run_dir(argv[i]);
    else if (stat(argv[i], &st) == 0)
      r = run_file(argv[i]) ? -1 : 1;
    else {
      printf("replay: %s does not exist (no inputs there)\n", argv[i]);
      r = 0;
    }
    if (r < 0)
      bad = 1;
    else
      total += r;
  }
  printf("replayed %ld inputs\n", total);
  return bad;
}
