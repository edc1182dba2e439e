# smtpd-maildir's hand-written formatters, queue ids and log buffer
# (examples/smtpd-maildir/fmt.c, queue_id.c, log.c) against inet_ntop and
# printf: tests/example/test_maildir_fmt.c.
if(TARGET smtpd-maildir)
  set(_smd ${PROJECT_SOURCE_DIR}/examples/smtpd-maildir)
  add_executable(example_maildir_fmt
    ${CMAKE_CURRENT_LIST_DIR}/example/test_maildir_fmt.c
    ${_smd}/fmt.c ${_smd}/log.c ${_smd}/queue_id.c
    ${_smd}/sysio.c)
  target_include_directories(example_maildir_fmt PRIVATE ${_smd})
  target_compile_options(example_maildir_fmt PRIVATE ${SMTPD_WARNINGS})
  add_test(NAME example_maildir_fmt COMMAND example_maildir_fmt)
  set_tests_properties(example_maildir_fmt PROPERTIES TIMEOUT 120)
endif()
