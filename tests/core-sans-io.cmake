# core_sans_io: the core library (libsmtpd) is a pure protocol engine: it
# exports no transcript symbol (the driver is libsmtpd-transcript) and
# calls no file, stream, socket or clock function of libc. Checked on the
# shared library the build made, with nm.
set(_smtpd_io_calls
  "fopen|fdopen|freopen|fread|fwrite|fclose|fflush|fgets|fputs|fputc|fgetc|getc|putc|puts|putchar|printf|fprintf|vprintf|vfprintf|perror|tmpfile|open|open64|openat|creat|read|write|pread|pwrite|close|stat|fstat|lstat|unlink|rename|remove|socket|connect|accept|bind|listen|send|recv|sendto|recvfrom|poll|select|epoll_wait|time|clock_gettime|gettimeofday")
add_test(NAME core_sans_io COMMAND sh -c "
  so=$<TARGET_FILE:smtpd>
  t=$(nm -D --defined-only \"$so\" | grep -i transcript)
  io=$(nm -D --undefined-only \"$so\" | awk '{print $2}' | sed 's/@.*//' |
       grep -E -x '${_smtpd_io_calls}')
  [ -z \"$t\" ] || { echo \"libsmtpd exports transcript symbols: $t\"; exit 1; }
  [ -z \"$io\" ] || { echo \"libsmtpd calls I/O functions: $io\"; exit 1; }
  echo \"ok: libsmtpd has no transcript code and calls no I/O function\"")
