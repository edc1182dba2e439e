# smtpd-maildir: the example event-loop server (examples/smtpd-maildir/).
# Links the core, plus the GnuTLS / Cyrus SASL adapters when they are built.
add_executable(smtpd-maildir
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/main.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/maildir.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/poller.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/adapters.c)
target_compile_options(smtpd-maildir PRIVATE ${SMTPD_WARNINGS})
target_link_libraries(smtpd-maildir PRIVATE smtpd_static)
if(EXISTS ${PROJECT_SOURCE_DIR}/lib/sasl/builtin.c)
  target_compile_definitions(smtpd-maildir PRIVATE SMTPD_HAVE_SASL_BUILTIN)
endif()
if(EXISTS ${PROJECT_SOURCE_DIR}/include/smtpd/received.h
   AND EXISTS ${PROJECT_SOURCE_DIR}/lib/received.c)
  target_compile_definitions(smtpd-maildir PRIVATE SMTPD_HAVE_RECEIVED)
endif()
if(SMTPD_HAVE_GNUTLS)
  target_compile_definitions(smtpd-maildir PRIVATE SMTPD_HAVE_GNUTLS)
  target_link_libraries(smtpd-maildir PRIVATE smtpd_gnutls_static)
endif()
if(SMTPD_HAVE_CYRUS)
  target_compile_definitions(smtpd-maildir PRIVATE SMTPD_HAVE_CYRUS)
  target_link_libraries(smtpd-maildir PRIVATE smtpd_sasl_cyrus_static)
endif()
# Same program over poll(2), to keep the portable path tested on Linux.
add_executable(smtpd-maildir-poll
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/main.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/maildir.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/poller.c
  ${CMAKE_CURRENT_LIST_DIR}/smtpd-maildir/adapters.c)
get_target_property(_smd_defs smtpd-maildir COMPILE_DEFINITIONS)
get_target_property(_smd_libs smtpd-maildir LINK_LIBRARIES)
target_compile_options(smtpd-maildir-poll PRIVATE ${SMTPD_WARNINGS})
if(_smd_defs)
  target_compile_definitions(smtpd-maildir-poll PRIVATE ${_smd_defs})
endif()
target_compile_definitions(smtpd-maildir-poll PRIVATE SMTPD_EXAMPLE_USE_POLL)
target_link_libraries(smtpd-maildir-poll PRIVATE ${_smd_libs})
