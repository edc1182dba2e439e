# smtpd-maildir: the example event-loop server (examples/smtpd-maildir/).
# A connection goes through the GnuTLS adapter's TLS-wrapped session once
# TLS can matter (at accept for implicit TLS, at STARTTLS otherwise), so it
# is built with that adapter; it links the Cyrus SASL adapter when that is
# built.
if(NOT SMTPD_HAVE_GNUTLS)
  message(STATUS "smtpd-maildir: not built (needs the GnuTLS adapter)")
  return()
endif()
set(_smd_sources
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/main.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/maildir.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/deliver.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/poller.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/milter_glue.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/fmt.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/log.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/queue_id.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/workers.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/defences.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/tmp_sweep.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/sysio.c)
add_executable(smtpd-maildir ${_smd_sources})
target_compile_options(smtpd-maildir PRIVATE ${SMTPD_WARNINGS})
target_link_libraries(smtpd-maildir PRIVATE smtpd_static)
# deliver.c: the delivery worker thread
find_package(Threads REQUIRED)
target_link_libraries(smtpd-maildir PRIVATE Threads::Threads)
if(EXISTS ${PROJECT_SOURCE_DIR}/lib/sasl/builtin.c)
  target_compile_definitions(smtpd-maildir PRIVATE SMTPD_HAVE_SASL_BUILTIN)
endif()
if(EXISTS ${PROJECT_SOURCE_DIR}/include/smtpd/received.h
   AND EXISTS ${PROJECT_SOURCE_DIR}/lib/received.c)
  target_compile_definitions(smtpd-maildir PRIVATE SMTPD_HAVE_RECEIVED)
endif()
target_link_libraries(smtpd-maildir PRIVATE smtpd_gnutls_static)
if(SMTPD_HAVE_CYRUS)
  target_compile_definitions(smtpd-maildir PRIVATE SMTPD_HAVE_CYRUS)
  target_link_libraries(smtpd-maildir PRIVATE smtpd_sasl_cyrus_static)
endif()
# --milter (milter_glue.c) when the Milter adapter is built; without it
# milter_glue.c compiles to stubs and --milter is refused.
if(SMTPD_HAVE_MILTER AND TARGET smtpd_milter_static)
  target_compile_definitions(smtpd-maildir PRIVATE SMTPD_HAVE_MILTER)
  target_link_libraries(smtpd-maildir PRIVATE smtpd_milter_static)
endif()
# Same program over poll(2), to keep the portable path tested on Linux.
add_executable(smtpd-maildir-poll ${_smd_sources})
get_target_property(_smd_defs smtpd-maildir COMPILE_DEFINITIONS)
get_target_property(_smd_libs smtpd-maildir LINK_LIBRARIES)
target_compile_options(smtpd-maildir-poll PRIVATE ${SMTPD_WARNINGS})
if(_smd_defs)
  target_compile_definitions(smtpd-maildir-poll PRIVATE ${_smd_defs})
endif()
target_compile_definitions(smtpd-maildir-poll PRIVATE SMTPD_EXAMPLE_USE_POLL)
target_link_libraries(smtpd-maildir-poll PRIVATE ${_smd_libs})
