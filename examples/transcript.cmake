# smtpd-transcript: runs canned SMTP conversations (tests/transcripts/*.txt
# or your own) against the engine and prints a diff for the first mismatch.
# Links libsmtpd-transcript; its man page docs/man/smtpd-transcript.1 is
# installed with the others (cmake/SmtpdDocs.cmake).
add_executable(smtpd-transcript ${CMAKE_CURRENT_LIST_DIR}/smtpd-transcript.c)
target_compile_options(smtpd-transcript PRIVATE ${SMTPD_WARNINGS})
target_link_libraries(smtpd-transcript PRIVATE smtpd_transcript_static)
install(TARGETS smtpd-transcript RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
