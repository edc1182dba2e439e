# smtpd-minimal: the one-page SMTP server that docs/guide.md walks through
# (examples/minimal.c): blocking sockets, one client at a time, STARTTLS
# through the GnuTLS adapter's TLS-wrapped session, so it is built with
# that adapter. ctest runs it against Python's smtplib
# (tests/example-minimal.cmake).
if(SMTPD_HAVE_GNUTLS)
  add_executable(smtpd-minimal ${CMAKE_CURRENT_LIST_DIR}/minimal.c)
  target_compile_options(smtpd-minimal PRIVATE ${SMTPD_WARNINGS})
  target_link_libraries(smtpd-minimal PRIVATE smtpd_gnutls_static)
endif()
